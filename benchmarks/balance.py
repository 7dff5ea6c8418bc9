"""How evenly the workers share keep-alive connections, and what it does to throughput.

wrk opens its connections in one burst when it starts and keeps them. Without a ceiling,
every worker polling the listening socket is woken for each, and the worker that happens to
run takes them; a keep-alive connection then stays with its worker for good. This starts
each server fresh, runs ``wrk -c32`` (keep-alive, ``/hello``), counts each worker's open TCP
connections halfway through (``/proc/PID/fd``, less what the worker held before wrk
started), and reports them with the rate:

    .venv/bin/python -m benchmarks.balance [--workers 2] [--rounds 8] [--duration 3]
        [--before PATH]

``--before PATH`` adds asgisup run from another checkout (e.g. ``git worktree add
/tmp/before HEAD~1``), to measure a change side by side. Servers alternate within each
round. ``spread`` is the busiest worker's share of the connections over a fair share (1.0:
even; 2.0 with two workers: one worker holds them all).

``--stalled`` measures instead what the balance must not do: wait for a sibling whose loop
is blocked. The last worker is stopped (SIGSTOP, as a long synchronous request would block
its loop), the others take ``--connections`` keep-alive connections, then ``--requests``
new connections one after another, each with one request (``Connection: close``); it
reports their latency, connect to the end of the response.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import threading
import time
from contextlib import suppress
from pathlib import Path

from benchmarks.servers import HOST, ROOT, ServerSpec, serving_process
from benchmarks.throughput import FAST, LOGS, wrk

SERVERS = {
    "asgisup": ServerSpec("asgisup-fast", "asgisup", 0, FAST),
    "uvicorn": ServerSpec("uvicorn-fast", "uvicorn", 0, FAST),
}


def sockets(pid: int) -> int:
    """How many sockets process ``pid`` has open (0 once it is gone)."""
    count = 0
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    for fd in fds:
        with suppress(OSError):  # closed meanwhile
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    return count


def workers_of(leader: int) -> list[int]:
    """The leader's children that hold a socket (the listening one): its workers, not the
    helpers some servers start (multiprocessing's resource tracker)."""
    out = subprocess.run(["pgrep", "-P", str(leader)], capture_output=True, text=True).stdout
    return sorted(pid for pid in map(int, out.split()) if sockets(pid))


def measure(
    name: str, spec: ServerSpec, cwd: Path, args: argparse.Namespace
) -> tuple[float, list[int]]:
    """(requests/s, each worker's open connections halfway through) of one fresh start."""
    log = LOGS / f"balance-{name}.log"
    with serving_process(spec, args.workers, log, cwd=cwd) as (port, proc):
        time.sleep(0.5)  # every worker polls
        pids = workers_of(proc.pid)
        before = [sockets(pid) for pid in pids]
        counts: list[int] = []

        def count() -> None:
            time.sleep(args.duration / 2)
            counts.extend(sockets(pid) - held for pid, held in zip(pids, before, strict=True))

        counter = threading.Thread(target=count)
        counter.start()
        rate = wrk(port, "/hello", "keep-alive", args.duration, args.connections)
        counter.join()
        return rate, counts


def _exchange(sock: socket.socket, close: bool) -> None:
    """One GET /hello on ``sock``, read to the end of the response (of the connection, with
    ``close``)."""
    header = b"Connection: close\r\n" if close else b""
    sock.sendall(b"GET /hello HTTP/1.1\r\nHost: bench\r\n" + header + b"\r\n")
    data = b""
    while True:
        chunk = sock.recv(65536)
        data += chunk
        if not chunk if close else data.endswith(b"Hello, world!"):
            return
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")


def stalled(name: str, spec: ServerSpec, cwd: Path, args: argparse.Namespace) -> list[float]:
    """Latencies in ms of ``args.requests`` new connections, one at a time, while the last
    worker is stopped and the others hold ``args.connections`` keep-alive connections."""
    log = LOGS / f"balance-stalled-{name}.log"
    with serving_process(spec, args.workers, log, cwd=cwd) as (port, proc):
        time.sleep(0.5)  # every worker polls
        stopped = workers_of(proc.pid)[-1]
        held: list[socket.socket] = []
        latencies = []
        os.kill(stopped, signal.SIGSTOP)
        try:
            for _ in range(args.connections):
                held.append(socket.create_connection((HOST, port), timeout=30))
                _exchange(held[-1], close=False)
            for _ in range(args.requests):
                started = time.perf_counter()
                with socket.create_connection((HOST, port), timeout=30) as sock:
                    _exchange(sock, close=True)
                latencies.append((time.perf_counter() - started) * 1000)
        finally:
            os.kill(stopped, signal.SIGCONT)
            for sock in held:
                sock.close()
        return latencies


def main_stalled(runs: list[tuple[str, ServerSpec, Path]], args: argparse.Namespace) -> None:
    print(
        f"{args.workers} workers, the last stopped; {args.connections} keep-alive connections "
        f"held, then {args.requests} new connections one at a time; {args.rounds} rounds"
    )
    results: dict[str, list[list[float]]] = {name: [] for name, _, _ in runs}
    for round_ in range(args.rounds):
        order = runs if round_ % 2 == 0 else runs[::-1]
        for name, spec, cwd in order:
            latencies = sorted(stalled(name, spec, cwd, args))
            results[name].append(latencies)
            print(f"  round {round_ + 1} {name:8} mean {statistics.mean(latencies):.3f} ms")
    print(f"{'server':8} {'mean ms':>8} {'p50 ms':>7} {'p99 ms':>7}  (medians of the rounds)")
    for name, rounds in results.items():
        mean = statistics.median(statistics.mean(lat) for lat in rounds)
        p50 = statistics.median(lat[len(lat) // 2] for lat in rounds)
        p99 = statistics.median(lat[int(len(lat) * 0.99)] for lat in rounds)
        print(f"{name:8} {mean:8.3f} {p50:7.3f} {p99:7.3f}")


def spread(counts: list[int]) -> float:
    total = sum(counts)
    return max(counts) * len(counts) / total if total else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--before", type=Path, help="also asgisup from this checkout")
    parser.add_argument("--stalled", action="store_true", help="latency with a worker stopped")
    parser.add_argument("--requests", type=int, default=400, help="with --stalled")
    args = parser.parse_args()
    runs = [("asgisup", SERVERS["asgisup"], ROOT), ("uvicorn", SERVERS["uvicorn"], ROOT)]
    if args.before is not None:
        runs.insert(1, ("before", SERVERS["asgisup"], args.before.resolve()))
    if args.stalled:
        main_stalled(runs, args)
        return
    results: dict[str, list[tuple[float, list[int]]]] = {name: [] for name, _, _ in runs}
    print(
        f"{args.workers} workers, wrk -t1 -c{args.connections} keep-alive /hello, "
        f"{args.rounds} rounds of {args.duration:g} s; connections per worker halfway"
    )
    for round_ in range(args.rounds):
        order = runs if round_ % 2 == 0 else runs[::-1]
        for name, spec, cwd in order:
            rate, counts = measure(name, spec, cwd, args)
            results[name].append((rate, counts))
            print(f"  round {round_ + 1} {name:8} {rate:9.0f} req/s  connections {counts}")
    print(f"{'server':8} {'req/s':>9} {'spread':>7}  (medians; spread 1.0 is even)")
    for name, rows in results.items():
        rate = statistics.median(rate for rate, _ in rows)
        spreads = [spread(counts) for _, counts in rows]
        print(f"{name:8} {rate:9.0f} {statistics.median(spreads):7.2f}  rounds {spreads}")


if __name__ == "__main__":
    main()
