"""Does TCP_DEFER_ACCEPT keep pre-opened idle connections from taking worker slots?

A proxy that opens its upstream pool in advance (or a TCP health checker) connects and sends
nothing. With a ceiling, an accepted silent connection holds a slot until the keep-alive
timeout. This opens ``--idle`` silent connections, then sends ``--requests`` real requests one
after another on new connections, ``--gap`` seconds apart, and reports their latency, for each
--defer-accept value.

    .venv/bin/python -m benchmarks.defer_accept
"""

from __future__ import annotations

import argparse
import re
import socket
import statistics
import subprocess
import sys
import time


def _start(defer: int, workers: int) -> tuple[subprocess.Popen[str], tuple[str, int]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "asgisup", "benchmarks.refapp:app", "--port", "0",
         "--workers", str(workers), "--max-inflight", "1", "--no-access-log",
         "--defer-accept", str(defer)],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    port = 0
    ready = 0
    for line in proc.stderr:
        found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if found:
            port = int(found.group(1))
        if " ready" in line:
            ready += 1
            if ready == workers:
                break
    return proc, ("127.0.0.1", port)


def _request(address: tuple[str, int]) -> float:
    started = time.perf_counter()
    with socket.create_connection(address, timeout=60) as sock:
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        while sock.recv(65536):
            pass
    return time.perf_counter() - started


def measure(defer: int, idle: int, requests: int, workers: int, gap: float) -> list[float]:
    proc, address = _start(defer, workers)
    try:
        silent = [socket.create_connection(address) for _ in range(idle)]
        latencies = []
        for _ in range(requests):
            latencies.append(_request(address))
            time.sleep(gap)  # spread the requests over the silent connections' lifetime
        for sock in silent:
            sock.close()
        return latencies
    finally:
        proc.terminate()
        proc.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=int, default=2)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--defer", type=int, nargs="*", default=[0, 1, 5, 30])
    parser.add_argument("--gap", type=float, default=0.4, help="seconds between requests")
    args = parser.parse_args()
    print(
        f"{args.workers} workers, ceiling 1, {args.idle} silent pre-opened connections, "
        f"{args.requests} requests {args.gap}s apart"
    )
    print(f"{'defer':>6} {'mean ms':>9} {'p50 ms':>8} {'max ms':>8}")
    for defer in args.defer:
        lat = [x * 1000 for x in measure(defer, args.idle, args.requests, args.workers, args.gap)]
        print(f"{defer:>6} {statistics.mean(lat):>9.1f} {statistics.median(lat):>8.1f} "
              f"{max(lat):>8.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
