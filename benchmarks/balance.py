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
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import threading
import time
from contextlib import suppress
from pathlib import Path

from benchmarks.servers import ROOT, ServerSpec, serving_process
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
    args = parser.parse_args()
    runs = [("asgisup", SERVERS["asgisup"], ROOT), ("uvicorn", SERVERS["uvicorn"], ROOT)]
    if args.before is not None:
        runs.insert(1, ("before", SERVERS["asgisup"], args.before.resolve()))
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
