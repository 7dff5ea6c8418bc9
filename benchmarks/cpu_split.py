"""Where the CPU goes per request: the server's user and system time, and wrk's.

On a machine where wrk shares the cores with the server, requests per second are bounded by
the CPU time all of them together spend per request, and a server can only speed up the
part that is its own. This runs wrk against asgisup and uvicorn (httptools + uvloop,
``benchmarks.refapp``'s ``/hello``), alternating round by round, and reports per request:

- ``server user``: user time of every process of the server (supervisor and workers);
- ``server sys``: their system time (the TCP stack of loopback works in whichever process
  sends or receives, so it lands on both sides);
- ``wrk``: wrk's user + system time;
- ``busy``: the share of the machine's cores all of that used while wrk ran;
- ``idle``, ``irq``: the machine's idle share, and its share in interrupts and softirqs, from
  ``/proc/stat`` over the same time (the loopback TCP stack's softirq work is charged to
  whichever process it interrupts, or to nobody when it runs on an idle core).

CPU times come from ``/proc/PID/stat`` (fields read after the closing parenthesis of the
process name, which has spaces in asgisup's process titles) and from wrk's rusage.

Where ``perf`` can count kernel events (Linux, ``perf_event_paranoid`` permitting; Debian:
``apt-get install linux-perf``), two more columns, per request, over the server's processes:

- ``turns``: the event loops' waits for events (``epoll_wait``/``epoll_pwait`` calls), so
  1.0 is a loop iteration per request and 0.1 is ten requests per iteration;
- ``cs``: context switches.

Without perf those columns show ``-``.

    .venv/bin/python -m benchmarks.cpu_split [--workers 2] [--mode close] [--rounds 3]
        [--defer-accept 30]

``--defer-accept N`` adds a third server, asgisup with that flag (its default, ``auto``, is
off without a ceiling), in the same rounds.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import statistics
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from benchmarks.servers import ServerSpec, proc_stats, serving_process
from benchmarks.throughput import FAST, LOGS, wrk

SERVERS = (
    ServerSpec("asgisup-fast", "asgisup", 0, FAST),
    ServerSpec("uvicorn-fast", "uvicorn", 0, FAST),
)
TICK = os.sysconf("SC_CLK_TCK")


def session_cpu(leader: int) -> tuple[float, float]:
    """User and system seconds of every live process in the session led by ``leader``."""
    user = system = 0.0
    for _, fields in proc_stats():
        if int(fields[3]) == leader:  # the session id
            user += int(fields[11]) / TICK
            system += int(fields[12]) / TICK
    return user, system


# perf stat event -> column; a wait for events is either system call, depending on the loop.
PERF_EVENTS = {
    "syscalls:sys_enter_epoll_wait": "turns",
    "syscalls:sys_enter_epoll_pwait": "turns",
    "context-switches": "cs",
}
PERF_COLUMNS = tuple(dict.fromkeys(PERF_EVENTS.values()))


@contextmanager
def perf_counts(leader: int) -> Iterator[dict[str, float]]:
    """Counts of PERF_EVENTS over the processes of the session led by ``leader``, filled in
    when the block ends; left empty when perf is missing or may not count."""
    counts: dict[str, float] = {}
    pids = [str(pid) for pid, fields in proc_stats() if int(fields[3]) == leader]
    if shutil.which("perf") is None or not pids:
        yield counts
        return
    command = ["perf", "stat", "-x", ",", "-e", ",".join(PERF_EVENTS), "-p", ",".join(pids)]
    perf = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        yield counts
    finally:
        perf.send_signal(signal.SIGINT)
        _, report = perf.communicate(timeout=30)
    for line in report.splitlines():  # value,unit,event,...; "<not supported>" and the like
        fields = line.split(",")
        if len(fields) < 3:
            continue  # perf's own messages (a pid that exited, a refused event)
        value, event = fields[0], fields[2]
        if event in PERF_EVENTS and value.isdigit():
            column = PERF_EVENTS[event]
            counts[column] = counts.get(column, 0.0) + int(value)


def machine_times() -> tuple[int, int, int]:
    """Idle, interrupt (hard and soft) and total ticks of all cores, from ``/proc/stat``."""
    with open("/proc/stat") as stat:
        ticks = [int(field) for field in stat.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    return ticks[3] + ticks[4], ticks[5] + ticks[6], sum(ticks[:8])


def measure(spec: ServerSpec, args: argparse.Namespace) -> dict[str, float]:
    with serving_process(spec, args.workers, LOGS / f"cpu-{spec.key}.log") as (port, proc):
        wrk(port, "/hello", args.mode, 1.0, args.connections)  # warm up
        user0, sys0 = session_cpu(proc.pid)
        child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        idle0, irq0, total0 = machine_times()
        with perf_counts(proc.pid) as counts:
            rate = wrk(port, "/hello", args.mode, args.duration, args.connections)
            idle1, irq1, total1 = machine_times()
            child1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk's, before perf's
            user1, sys1 = session_cpu(proc.pid)
    requests = rate * args.duration
    client = (child1.ru_utime - child0.ru_utime) + (child1.ru_stime - child0.ru_stime)
    return {
        "rate": rate,
        "user_us": (user1 - user0) / requests * 1e6,
        "sys_us": (sys1 - sys0) / requests * 1e6,
        "wrk_us": client / requests * 1e6,
        "busy": ((user1 - user0) + (sys1 - sys0) + client) / args.duration / os.cpu_count(),
        "idle": (idle1 - idle0) / max(1, total1 - total0),
        "irq": (irq1 - irq0) / max(1, total1 - total0),
        **{column: count / requests for column, count in counts.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mode", choices=("keep-alive", "close"), default="close")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--defer-accept", type=int, help="also asgisup with this flag")
    args = parser.parse_args()
    servers: tuple[ServerSpec, ...] = SERVERS
    if args.defer_accept is not None:
        flags = (*FAST, "--defer-accept", str(args.defer_accept))
        servers += (ServerSpec(f"asgisup-defer{args.defer_accept}", "asgisup", 0, flags),)
    results: dict[str, list[dict[str, float]]] = {spec.key: [] for spec in servers}
    for _ in range(args.rounds):
        for spec in servers:
            results[spec.key].append(measure(spec, args))
    print(
        f"{args.workers} worker(s), {args.mode}, wrk -t1 -c{args.connections}, {args.rounds} "
        f"rounds of {args.duration:g} s, medians; CPU in microseconds per request"
    )
    columns = ("req/s", "user", "sys", "wrk", "total", "busy", "idle", "irq", *PERF_COLUMNS)
    widths = (8, 7, 7, 7, 7, 6, 6, 6, *(6 for _ in PERF_COLUMNS))
    heads = (f"{name:>{width}}" for name, width in zip(columns, widths, strict=True))
    print(f"{'server':28}", *heads)
    for label, rows in results.items():
        med = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
        total = med["user_us"] + med["sys_us"] + med["wrk_us"]
        counted = " ".join(
            f"{med[column]:6.2f}" if column in med else f"{'-':>6}" for column in PERF_COLUMNS
        )
        print(
            f"{label:28} {med['rate']:8.0f} {med['user_us']:7.1f} {med['sys_us']:7.1f} "
            f"{med['wrk_us']:7.1f} {total:7.1f} {med['busy']:6.2f} "
            f"{med['idle']:6.2f} {med['irq']:6.2f} {counted}"
        )


if __name__ == "__main__":
    main()
