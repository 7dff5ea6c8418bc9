"""What the keep-alive policy (--busy-close) costs on cheap requests: hello-world throughput
with it on and off, measured by wrk in alternating rounds (on, off, on, off, ...), each round
on a freshly started server, so slow drift of the machine hits both sides alike.

    .venv/bin/python -m benchmarks.busy_close_cost [--rounds 5] [--duration 5]

Needs wrk (Debian: apt-get install wrk). benchmarks/run.py runs the same comparison.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.servers import HOST, ServerSpec, serving

VARIANTS: dict[str, tuple[str, ...]] = {"on": (), "off": ("--no-busy-close",)}
TARGET = 0.97  # throughput with the policy on, as a share of it off


def wrk(port: int, duration: float, connections: int) -> float:
    """Requests per second wrk measured on /hello (keep-alive connections, one thread).

    Raises subprocess.CalledProcessError when wrk fails, RuntimeError when its report has no rate.
    """
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", f"http://{HOST}:{port}/hello"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"no Requests/sec in wrk's output:\n{out}")
    return float(found.group(1))


@dataclass
class HelloResult:
    """Requests per second per round, with the policy on and off."""

    workers: int
    ceiling: int
    connections: int
    duration: float
    on: list[float]
    off: list[float]

    @property
    def ratio(self) -> float:
        """Median over rounds of on/off, each round's pair measured side by side."""
        return statistics.median(a / b for a, b in zip(self.on, self.off, strict=True))

    def as_dict(self) -> dict[str, object]:
        return {
            **asdict(self),
            "median_on": statistics.median(self.on),
            "median_off": statistics.median(self.off),
            "ratio": self.ratio,
        }


def compare(
    *,
    rounds: int,
    duration: float,
    connections: int,
    workers: int,
    ceiling: int,
    log_dir: Path,
) -> HelloResult:
    """Alternate wrk runs against asgisup with --busy-close and with --no-busy-close.

    Raises ServerFailed when a server does not come up, and what wrk() raises.
    """
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for round_ in range(rounds):
        for name, extra in VARIANTS.items():
            spec = ServerSpec(f"asgisup-c{ceiling}", "asgisup", ceiling, extra)
            with serving(spec, workers, log_dir / f"hello-{name}-{round_}.log") as port:
                rates[name].append(wrk(port, duration, connections))
    return HelloResult(workers, ceiling, connections, duration, rates["on"], rates["off"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--ceiling", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="asgisup-bench-") as logs:
        result = compare(
            rounds=args.rounds,
            duration=args.duration,
            connections=args.connections,
            workers=args.workers,
            ceiling=args.ceiling,
            log_dir=Path(logs),
        )
    print(
        f"{args.workers} worker(s), ceiling {args.ceiling}, wrk -c{args.connections}, "
        f"{args.rounds} rounds of {args.duration:g}s"
    )
    for name, values in (("on", result.on), ("off", result.off)):
        rounded = [round(v) for v in values]
        print(f"busy-close {name:>3}: median {statistics.median(values):8.0f} req/s  {rounded}")
    verdict = "PASS" if result.ratio >= TARGET else "FAIL"
    print(f"median ratio on/off: {result.ratio:.3f} -> {verdict} (>= {TARGET})")


if __name__ == "__main__":
    main()
