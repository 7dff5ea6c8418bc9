"""Speed per worker: requests per second against uvicorn, the cost of a ceiling, memory and
start-up time.

    .venv/bin/python -m benchmarks.throughput [--rounds 5] [--duration 5] [--quick] [--ws-only]

Throughput is measured by wrk (closed loop; Debian: apt-get install wrk) on fresh servers, A
and B alternating round by round (A, B, A, B, ...), and reported as the median over rounds of
the per-round ratio A/B, so slow drift of a noisy machine hits both sides alike. Cases:

- paths ``/hello`` (13 bytes of text) and ``/json`` (a 1 KiB JSON body) of benchmarks.refapp;
- keep-alive connections (wrk's default) and a new connection per request
  (``Connection: close``);
- 1 and 2 workers.

Pairs: asgisup vs uvicorn with httptools + uvloop, the same with h11 + asyncio, and asgisup
with ``--max-inflight 64`` vs no ceiling (both ``--defer-accept 0``, so only the ceiling
differs); ``--pairs 3`` runs asgisup against itself, which shows how far from 1.0 the ratio of
two equal servers strays on the machine at hand; ``--pairs 4`` measures what
``--defer-accept`` costs (asgisup with it against without it).

WebSocket echo, messages per second: benchmarks.wsload (closed loop, 16 connections, each
sending a message and waiting for its echo) against ``/ws`` of benchmarks.refapp, 1 worker,
httptools + uvloop, the same A/B rounds and median ratio. Messages: 32 bytes of text and
1 KiB of binary, per-message deflate off. Pairs: asgisup vs uvicorn, both with
``--ws websockets`` and both with ``--ws wsproto``. A side that fails (the server does not
start, refuses the handshake, drops connections, echoes wrongly) ends that case: its row holds
the error instead of a ratio, and its verdict fails. These rows also hold ``client_cpu``, the
load generator's busiest process's share of a core: near 1.0, the client rather than the server
may have set the rate. ``--ws-only`` runs just these and writes ``throughput-ws.json``
(``throughput-ws-quick.json``), leaving the full results alone.

On a machine with cores to spare, keep the load generator off the servers' cores:
``--server-cpus 0-7 --wrk-cpus 8-15 --wrk-threads 4 --connections 256 --workers 8`` (taskset
lists; the servers' workers inherit the pinning).

Then memory (RSS from /proc) and the time for 8 workers to be ready. Results go to
``benchmarks/results/throughput.json``; a run of other ``--pairs`` or ``--workers`` writes
``throughput-partial.json`` instead. The exit status is 1 when a verdict fails.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from benchmarks import wsload
from benchmarks.servers import ROOT, ServerFailed, ServerSpec, pinned, serving

FAST = ("--http", "httptools", "--loop", "uvloop")
PURE = ("--http", "h11", "--loop", "asyncio")
NO_DEFER = (*FAST, "--defer-accept", "0")


@dataclass(frozen=True)
class Pair:
    name: str
    a: ServerSpec
    b: ServerSpec
    target: float  # median A/B must be at least this


PAIRS = (
    Pair(
        "asgisup / uvicorn, httptools + uvloop",
        ServerSpec("asgisup-fast", "asgisup", 0, FAST),
        ServerSpec("uvicorn-fast", "uvicorn", 0, FAST),
        1.25,
    ),
    Pair(
        "asgisup / uvicorn, h11 + asyncio",
        ServerSpec("asgisup-pure", "asgisup", 0, PURE),
        ServerSpec("uvicorn-pure", "uvicorn", 0, PURE),
        1.0,
    ),
    # Both without TCP_DEFER_ACCEPT (--defer-accept auto turns it on with a ceiling): this
    # pair measures the admission machinery; --pairs 4 measures deferring.
    Pair(
        "asgisup --max-inflight 64 / no ceiling",
        ServerSpec("asgisup-c64", "asgisup", 64, NO_DEFER),
        ServerSpec("asgisup-c0", "asgisup", 0, NO_DEFER),
        0.97,
    ),
    # Not run by default (--pairs 3): the same server as A and B, so the ratio shows what
    # running first in a round and the machine's noise do on their own.
    Pair(
        "asgisup / asgisup, the same server twice (calibration)",
        ServerSpec("asgisup-a", "asgisup", 0, FAST),
        ServerSpec("asgisup-b", "asgisup", 0, FAST),
        0.97,
    ),
    # Not run by default (--pairs 4): what TCP_DEFER_ACCEPT costs (docs/admission.md).
    Pair(
        "asgisup --defer-accept 30 / --defer-accept 0",
        ServerSpec("asgisup-defer30", "asgisup", 0, (*FAST, "--defer-accept", "30")),
        ServerSpec("asgisup-defer0", "asgisup", 0, NO_DEFER),
        0.97,
    ),
)
WS_PAIRS = tuple(
    Pair(
        f"asgisup / uvicorn, WebSocket echo, {ws} + uvloop",
        ServerSpec(f"asgisup-ws-{ws}", "asgisup", 0, ("--ws", ws, *FAST)),
        ServerSpec(f"uvicorn-ws-{ws}", "uvicorn", 0, ("--ws", ws, *FAST)),
        1.0,
    )
    for ws in ("websockets", "wsproto")
)
DEFAULT_PAIRS = "0,1,2"
WS_MESSAGES: tuple[wsload.MessageKind, ...] = ("text", "binary")
WS_PATH = "/ws"
PATHS = ("/hello", "/json")
MODES = ("keep-alive", "close")
LOGS = ROOT / "benchmarks" / "results" / "logs"


def wrk(
    port: int,
    path: str,
    mode: str,
    duration: float,
    connections: int,
    *,
    threads: int = 1,
    cpus: str | None = None,
) -> float:
    """Requests per second wrk measured (``threads`` wrk threads, pinned to ``cpus``, a
    ``taskset -c`` list, when given)."""
    command = [*pinned(cpus), "wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s"]
    if mode == "close":
        command += ["-H", "Connection: close"]
    out = subprocess.run(
        [*command, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True
    ).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if found is None or errors is not None:
        raise RuntimeError(f"wrk failed or saw errors:\n{out}")
    return float(found.group(1))


def measure(
    spec: ServerSpec, workers: int, path: str, mode: str, args: argparse.Namespace
) -> float:
    load = {"threads": args.wrk_threads, "cpus": args.wrk_cpus}
    log = LOGS / f"throughput-{spec.key}.log"
    with serving(spec, workers, log, args.server_cpus) as port:
        wrk(port, path, mode, 1, args.connections, **load)  # warm-up: imports, first accepts
        return wrk(port, path, mode, args.duration, args.connections, **load)


def compare(pair: Pair, args: argparse.Namespace) -> list[dict[str, object]]:
    rows = []
    for workers in args.workers:
        for path in PATHS:
            for mode in MODES:
                a_rates, b_rates = [], []
                for _ in range(args.rounds):
                    a_rates.append(measure(pair.a, workers, path, mode, args))
                    b_rates.append(measure(pair.b, workers, path, mode, args))
                ratios = [a / b for a, b in zip(a_rates, b_rates, strict=True)]
                row = {
                    "pair": pair.name, "workers": workers, "path": path, "mode": mode,
                    "a": statistics.median(a_rates), "b": statistics.median(b_rates),
                    "ratio": statistics.median(ratios), "target": pair.target,
                }  # fmt: skip
                rows.append(row)
                print(
                    f"  {workers}w {path:6} {mode:10} {row['a']:9.0f} / {row['b']:9.0f} req/s "
                    f"= {row['ratio']:.3f} (rounds {', '.join(f'{r:.3f}' for r in ratios)})",
                    flush=True,
                )
    return rows


class CaseFailed(Exception):
    """One side of a WebSocket case failed; the message says which server and how."""


def _gist(failure: ServerFailed) -> str:
    # ServerFailed ends with the server's log tail; its first line and the log's last line
    # (argparse's complaint, a traceback's exception) are what a reader needs.
    lines = [line for line in str(failure).splitlines() if line.strip()]
    return lines[0] if len(lines) < 2 else f"{lines[0]} {lines[-1].strip()}"


def measure_ws(
    spec: ServerSpec, message: wsload.MessageKind, args: argparse.Namespace
) -> wsload.Result:
    """What wsload measured against ``spec`` with 1 worker, when it saw no error.

    Raises CaseFailed when the server does not start or the load saw any error.
    """
    log = LOGS / f"throughput-{spec.key}.log"
    try:
        with serving(spec, 1, log) as port:
            load = wsload.Load(
                port, path=WS_PATH, connections=args.ws_connections,
                processes=min(wsload.DEFAULT_PROCESSES, args.ws_connections),
                duration=args.duration, message=message,
            )  # fmt: skip
            result = wsload.run(load)  # its warm-up is built in
    except ServerFailed as exc:
        raise CaseFailed(f"{spec.key}: {_gist(exc)}") from None
    failure = result.failure()
    if failure is not None:
        raise CaseFailed(f"{spec.key}: {failure} (log: {log.relative_to(ROOT)})")
    return result


def compare_ws(pair: Pair, args: argparse.Namespace) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for message in WS_MESSAGES:
        mode = f"echo {wsload.message_label(message)}"
        a_rates: list[float] = []
        b_rates: list[float] = []
        errors: list[str] = []
        client_cpu = 0.0  # near 1.0: the client, not the server, may have set the rate
        for _ in range(args.rounds):
            for spec, rates in ((pair.a, a_rates), (pair.b, b_rates)):
                try:
                    result = measure_ws(spec, message, args)
                except CaseFailed as exc:
                    errors.append(str(exc))
                    continue
                rates.append(result.messages_per_s)
                client_cpu = max(client_cpu, result.client_cpu)
            if errors:
                break  # more rounds would fail the same way; the other side got measured once
        row: dict[str, object] = {
            "pair": pair.name, "workers": 1, "path": WS_PATH, "mode": mode,
            "a": statistics.median(a_rates) if a_rates else None,
            "b": statistics.median(b_rates) if b_rates else None,
            "ratio": None, "target": pair.target, "client_cpu": round(client_cpu, 3),
        }  # fmt: skip
        rows.append(row)
        if errors:
            row["error"] = "; ".join(errors)
            a = "-" if row["a"] is None else f"{row['a']:.0f}"
            b = "-" if row["b"] is None else f"{row['b']:.0f}"
            print(f"  1w {WS_PATH:6} {mode:18} {a:>9} / {b:>9} msg/s  FAILED", flush=True)
            for error in errors:
                print(f"      {error}", flush=True)
            continue
        ratios = [a / b for a, b in zip(a_rates, b_rates, strict=True)]
        row["ratio"] = statistics.median(ratios)
        print(
            f"  1w {WS_PATH:6} {mode:18} {row['a']:9.0f} / {row['b']:9.0f} msg/s "
            f"= {row['ratio']:.3f} (rounds {', '.join(f'{r:.3f}' for r in ratios)}; "
            f"client CPU up to {client_cpu:.2f})",
            flush=True,
        )
    return rows


def _verdict(pair: Pair, rows: list[dict[str, object]]) -> tuple[str, bool] | None:
    """The verdict on ``pair`` from its rows: its worst ratio, or its first failure."""
    mine = [row for row in rows if row["pair"] == pair.name]
    for row in mine:
        if "error" in row:
            return f"{pair.name}: {row['mode']} failed: {row['error']}", False
    if not mine:
        return None
    worst = min(cast(float, row["ratio"]) for row in mine)
    return f"{pair.name}: worst case {worst:.3f}", worst >= pair.target


def rss_kib(pid: int) -> int:
    found = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert found is not None
    return int(found.group(1))


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()]


def memory_and_start() -> dict[str, float]:
    """Supervisor RSS, idle worker RSS of asgisup and uvicorn, time to 8 ready workers."""
    out: dict[str, float] = {}
    app = "benchmarks.refapp:app"
    for name, command in (
        ("asgisup", [sys.executable, "-m", "asgisup", app, "--port", "0", "--workers", "2",
                     *FAST]),
        ("uvicorn", [sys.executable, "-m", "uvicorn", app, "--port", "0", "--workers", "2",
                     "--log-level", "warning", *FAST]),
    ):  # fmt: skip
        proc = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.DEVNULL)
        time.sleep(4.0)  # booted and idle
        workers = [
            pid for pid in children(proc.pid) if "worker" in _title(pid) or name == "uvicorn"
        ]
        rss = [rss_kib(pid) for pid in workers]
        if name == "uvicorn":  # its children: the workers and multiprocessing's helper
            rss = sorted(rss)[-2:]
        out[f"{name}_worker_rss_mib"] = max(rss) / 1024
        out[f"{name}_supervisor_rss_mib"] = rss_kib(proc.pid) / 1024
        proc.terminate()
        proc.wait(30)
    command = [sys.executable, "-m", "asgisup", app, "--port", "0", "--workers", "8", *FAST]
    started = time.monotonic()
    eight = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    assert eight.stderr is not None
    ready = 0
    for line in eight.stderr:
        ready += " ready" in line
        if ready == 8:
            break
    out["asgisup_8_workers_ready_s"] = time.monotonic() - started
    eight.terminate()
    eight.wait(30)
    return out


def _title(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")


def main() -> bool:
    """Runs the benchmark; whether every verdict passed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--wrk-cpus", help="pin wrk to these CPUs (taskset -c list: 8-15)")
    parser.add_argument("--server-cpus", help="pin the servers to these CPUs (0-7)")
    parser.add_argument("--workers", type=lambda s: [int(w) for w in s.split(",")], default=[1, 2])
    parser.add_argument("--pairs", default=DEFAULT_PAIRS, help="which pairs, by index")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 s, 1 worker")
    parser.add_argument(
        "--ws-pairs", default="0,1", help="which WebSocket pairs, by index ('' for none)"
    )
    parser.add_argument("--ws-connections", type=int, default=wsload.Load.connections)
    parser.add_argument(
        "--ws-only", action="store_true", help="only the WebSocket pairs: no HTTP, no memory"
    )
    args = parser.parse_args()
    if args.ws_connections < 1:
        parser.error("--ws-connections must be at least 1")
    if args.quick:
        args.rounds, args.duration, args.workers = 2, 2.0, [1]
    rows = []
    for index in () if args.ws_only else (int(i) for i in args.pairs.split(",")):
        pair = PAIRS[index]
        print(f"{pair.name} (target >= {pair.target})", flush=True)
        rows += compare(pair, args)
    for index in (int(i) for i in args.ws_pairs.split(",") if i):
        pair = WS_PAIRS[index]
        print(f"{pair.name} (target >= {pair.target})", flush=True)
        rows += compare_ws(pair, args)
    verdicts = [v for v in (_verdict(pair, rows) for pair in (*PAIRS, *WS_PAIRS)) if v]
    figures: dict[str, float] = {}
    if not args.ws_only:
        figures = memory_and_start()
        verdicts += [
            (f"supervisor RSS {figures['asgisup_supervisor_rss_mib']:.1f} MiB (< 30)",
             figures["asgisup_supervisor_rss_mib"] < 30),
            (f"idle worker RSS {figures['asgisup_worker_rss_mib']:.1f} MiB vs uvicorn's "
             f"{figures['uvicorn_worker_rss_mib']:.1f}",
             figures["asgisup_worker_rss_mib"] <= figures["uvicorn_worker_rss_mib"]),
            (f"8 workers ready in {figures['asgisup_8_workers_ready_s']:.2f} s (< 2)",
             figures["asgisup_8_workers_ready_s"] < 2.0),
        ]  # fmt: skip
    print()
    for text, ok in verdicts:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    result = {
        "command": " ".join(["python -m benchmarks.throughput", *sys.argv[1:]]),
        "machine": f"{platform.processor() or platform.machine()}, {platform.platform()}",
        "rows": rows,
        "figures": figures,
        "verdicts": [{"text": text, "pass": ok} for text, ok in verdicts],
    }
    # A run of other pairs or workers than the full one keeps off the full results.
    partial = args.pairs != DEFAULT_PAIRS or (args.workers != [1, 2] and not args.quick)
    suffix = "".join(
        name
        for name, chosen in (("-ws", args.ws_only), ("-partial", partial), ("-quick", args.quick))
        if chosen
    )
    out = ROOT / "benchmarks" / "results" / f"throughput{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    return all(ok for _, ok in verdicts)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
