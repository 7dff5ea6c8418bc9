"""What the keep-alive policy (--busy-close) costs on cheap requests: hello-world throughput
with it on and off, measured by wrk in alternating rounds (A, B, A, B, ...).

    .venv/bin/python -m benchmarks.busy_close_cost [--rounds 5] [--duration 5]

Needs wrk (Debian: apt-get install wrk).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys


def _start(extra: list[str], workers: int, ceiling: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "asgisup", "benchmarks.refapp:app", "--port", "0",
         "--workers", str(workers), "--max-inflight", str(ceiling), "--no-access-log", *extra],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    url, ready = "", 0
    for line in proc.stderr:
        found = re.search(r"listening on (http://\S+)", line)
        if found:
            url = found.group(1)
        ready += " ready" in line
        if ready == workers:
            break
    return proc, url


def wrk(url: str, duration: int, connections: int) -> float:
    """Requests per second wrk measured on /hello."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", f"{url}/hello"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert found, out
    return float(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--ceiling", type=int, default=1)
    args = parser.parse_args()
    variants = {"on": [], "off": ["--no-busy-close"]}
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, extra in variants.items():
            proc, url = _start(extra, args.workers, args.ceiling)
            try:
                rates[name].append(wrk(url, args.duration, args.connections))
            finally:
                proc.terminate()
                proc.wait(60)
    ratios = [on / off for on, off in zip(rates["on"], rates["off"], strict=True)]
    print(f"{args.workers} worker(s), ceiling {args.ceiling}, wrk -c{args.connections}, "
          f"{args.rounds} rounds of {args.duration}s")  # fmt: skip
    for name, values in rates.items():
        print(f"busy-close {name:>3}: median {statistics.median(values):8.0f} req/s  {values}")
    ratio = statistics.median(ratios)
    print(f"median ratio on/off: {ratio:.3f} -> {'PASS' if ratio >= 0.97 else 'FAIL'} (>= 0.97)")


if __name__ == "__main__":
    main()
