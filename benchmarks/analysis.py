"""From one run's request records to its summary, and from all summaries to the verdicts."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.ideal import Job, replay, summarize
from benchmarks.loadgen import Record
from benchmarks.scenarios import Scenario
from benchmarks.servers import ServerSpec

STATS = ("mean", "p50", "p99", "p99.9")


@dataclass
class RunSummary:
    """One (scenario, server) run, reduced to numbers (latencies in ms)."""

    scenario: str
    server: str
    label: str
    kind: str
    ceiling: int
    mode: str
    io_ms: float
    workers: int
    rate: float  # requests per second offered
    requests: int
    ok: int
    errors: dict[str, int]
    retries: int
    measured: dict[str, float] | None  # of the requests that succeeded
    ideal: dict[str, float] | None  # the same requests in the M/G/c replay
    ratio: dict[str, float] | None  # measured / ideal
    close_pct: float | None  # responses that said Connection: close (keep-alive modes only)
    per_worker: list[int]  # requests served by each worker pid, most first
    per_worker_busy: list[float]  # seconds of blocking work each worker did, most first
    lag_ms: dict[str, float]  # how late the generator sent (its own error)
    service_ms: float | None  # mean blocking time the app measured
    wall_s: float

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize_run(
    scenario: Scenario,
    spec: ServerSpec,
    workers: int,
    records: Sequence[Record],
    wall_s: float,
    rate: float,
) -> RunSummary:
    """Replay ``records`` through the M/G/c ideal with ``workers`` servers and summarize both.

    The ideal takes every request (failed ones with their nominal service time), since all of
    them loaded the server; the statistics compare the requests that succeeded.
    """
    jobs = [
        Job(
            arrival=r.scheduled,
            service=(r.server_ms if r.server_ms is not None else r.service_ms) / 1000,
            delay=r.io_ms / 1000,
        )
        for r in records
    ]
    ideal = replay(jobs, workers)
    measured_ms: list[float] = []
    ok: list[int] = []
    for i, r in enumerate(records):
        if r.error is None and r.latency is not None:
            ok.append(i)
            measured_ms.append(r.latency * 1000)
    measured = ideal_stats = ratio = None
    if ok:
        measured = summarize(measured_ms).as_dict()
        ideal_stats = summarize([ideal[i] * 1000 for i in ok]).as_dict()
        ratio = {k: measured[k] / ideal_stats[k] for k in STATS}
    errors = Counter(r.error for r in records if r.error is not None)
    served: Counter[int] = Counter()
    busy: dict[int, float] = {}
    for r in records:
        if r.pid is not None and r.error is None:
            served[r.pid] += 1
            busy[r.pid] = busy.get(r.pid, 0.0) + (r.server_ms or 0.0) / 1000
    close_pct = None
    if scenario.mode == "pool" and ok:
        close_pct = 100 * sum(records[i].closed for i in ok) / len(ok)
    lags = [r.lag * 1000 for r in records if r.lag is not None]
    lag = summarize(lags) if lags else None
    services = [r.server_ms for r in records if r.server_ms is not None]
    return RunSummary(
        scenario=scenario.name,
        server=spec.key,
        label=spec.label,
        kind=spec.kind,
        ceiling=spec.ceiling,
        mode=scenario.mode,
        io_ms=scenario.io_ms,
        workers=workers,
        rate=rate,
        requests=len(records),
        ok=len(ok),
        errors=dict(errors),
        retries=sum(r.retried for r in records),
        measured=measured,
        ideal=ideal_stats,
        ratio=ratio,
        close_pct=close_pct,
        per_worker=sorted(served.values(), reverse=True),
        per_worker_busy=sorted(busy.values(), reverse=True),
        lag_ms={"mean": lag.mean, "p99": lag.p99, "max": max(lags)} if lag else {},
        service_ms=math.fsum(services) / len(services) if services else None,
        wall_s=wall_s,
    )


@dataclass(frozen=True)
class Target:
    """One checked target: ``value`` against ``limit`` (at most, or at least)."""

    scenario: str
    what: str
    value: float | None
    limit: float
    at_least: bool = False
    unit: str = "x"

    @property
    def passed(self) -> bool:
        if self.value is None or math.isnan(self.value):
            return False
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    def line(self) -> str:
        shown = "n/a" if self.value is None else f"{self.value:.3g}{self.unit}"
        limit = f"{'>=' if self.at_least else '<='} {self.limit:g}{self.unit}"
        return (
            f"{'PASS' if self.passed else 'FAIL'}  {self.scenario}: {self.what} {shown} ({limit})"
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed, "line": self.line()}


BLOCKING_LIMITS = {"new": 1.10, "pool": 1.10, "burst": 1.12}
POOL_PEER_ADVANTAGE = 1.5  # uvicorn's p99 over asgisup c=1's, behind a keep-alive pool
HELLO_LIMIT = 0.97


def _find(runs: Sequence[Mapping[str, Any]], scenario: str, server: str) -> Mapping[str, Any]:
    for run in runs:
        if run["scenario"] == scenario and run["server"] == server:
            return run
    return {}


def targets(runs: Sequence[Mapping[str, Any]], hello: Mapping[str, Any] | None) -> list[Target]:
    """The targets that the runs at hand allow to check (``runs`` as RunSummary.as_dict())."""
    found: list[Target] = []
    for scenario, limit in BLOCKING_LIMITS.items():
        run = _find(runs, scenario, "asgisup-c1")
        if not run:
            continue
        ratio = run["ratio"] or {}
        found.append(Target(scenario, "asgisup c=1 mean / ideal", ratio.get("mean"), limit))
        found.append(Target(scenario, "asgisup c=1 p99 / ideal", ratio.get("p99"), limit))
        errors = float(sum(run["errors"].values()))
        found.append(Target(scenario, "asgisup c=1 errors", errors, 0, unit=""))
    ours, peer = _find(runs, "pool", "asgisup-c1"), _find(runs, "pool", "uvicorn")
    if ours and peer and ours["measured"] and peer["measured"]:
        advantage = peer["measured"]["p99"] / ours["measured"]["p99"]
        what = "uvicorn p99 / asgisup c=1 p99"
        found.append(Target("pool", what, advantage, POOL_PEER_ADVANTAGE, at_least=True))
    if hello is not None:
        what = "keep-alive req/s, busy-close on / off"
        found.append(Target("hello", what, hello["ratio"], HELLO_LIMIT, at_least=True))
    return found


def best_ceilings(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """For each io scenario, the asgisup ceiling closest to the ideal at the mean (then p99)."""
    best: list[dict[str, Any]] = []
    for scenario in dict.fromkeys(r["scenario"] for r in runs):
        if not scenario.startswith("io-"):
            continue
        candidates = [
            r for r in runs if r["scenario"] == scenario and r["kind"] == "asgisup" and r["ratio"]
        ]
        if not candidates:
            continue
        winner = min(candidates, key=lambda r: (r["ratio"]["mean"], r["ratio"]["p99"]))
        peer = _find(runs, scenario, "uvicorn")
        best.append(
            {
                "scenario": scenario,
                "server": winner["server"],
                "label": winner["label"],
                "ratio": winner["ratio"],
                "uvicorn_ratio": peer.get("ratio"),
            }
        )
    return best


def best_line(best: Mapping[str, Any]) -> str:
    ratio = best["ratio"]
    line = (
        f"BEST  {best['scenario']}: {best['label']} at {ratio['mean']:.2f}x the ideal mean, "
        f"{ratio['p99']:.2f}x p99"
    )
    if best["uvicorn_ratio"]:
        peer = best["uvicorn_ratio"]
        line += f" (uvicorn {peer['mean']:.2f}x, {peer['p99']:.2f}x)"
    return line
