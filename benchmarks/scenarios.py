"""The load scenarios: how requests arrive and what each asks of the app.

Rates are set from the offered utilisation of the workers' blocking time:
``utilisation = rate * mean service / workers``. Awaited I/O occupies no worker, so the io
scenarios offer the same blocking load as ``new``/``pool``, plus 20 ms of I/O per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from benchmarks.loadgen import DEFAULT_MIX, Arrival, Mix, Mode, bursts, mean_service_ms, poisson

BURST_SIZE = 20
IO_MS = 20.0


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    arrivals_kind: Literal["poisson", "burst"]
    mode: Mode
    utilisation: float
    io_ms: float = 0.0
    blocking: bool = True  # only loop-blocking work (the scenarios with targets)
    mix: Mix = DEFAULT_MIX

    def rate(self, workers: int) -> float:
        """Requests per second offered to ``workers`` workers."""
        return self.utilisation * workers / (mean_service_ms(self.mix) / 1000)

    def arrivals(self, workers: int, duration: float, seed: int) -> list[Arrival]:
        """The planned requests of one run (the same for every server, given the seed)."""
        if self.arrivals_kind == "burst":
            burst_rate = self.rate(workers) / BURST_SIZE
            return bursts(burst_rate, BURST_SIZE, duration, self.mix, self.io_ms, seed)
        return poisson(self.rate(workers), duration, self.mix, self.io_ms, seed)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("new", "Poisson arrivals, a new connection per request", "poisson", "new", 0.7),
        Scenario(
            "pool", "Poisson arrivals through an nginx-like keep-alive pool", "poisson", "pool", 0.7
        ),
        Scenario(
            "burst",
            f"bursts of {BURST_SIZE} simultaneous new connections, Poisson burst times",
            "burst",
            "new",
            0.55,
        ),
        Scenario(
            "io-new",
            f"{IO_MS:g} ms awaited I/O, then the blocking mix; new connections",
            "poisson",
            "new",
            0.7,
            io_ms=IO_MS,
            blocking=False,
        ),
        Scenario(
            "io-pool",
            f"{IO_MS:g} ms awaited I/O, then the blocking mix; keep-alive pool",
            "poisson",
            "pool",
            0.7,
            io_ms=IO_MS,
            blocking=False,
        ),
    )
}
