"""Speed per worker: requests per second against uvicorn, the cost of a ceiling, memory and
start-up time.

    .venv/bin/python -m benchmarks.throughput [--rounds 5] [--duration 5] [--quick]

Throughput is measured by wrk (closed loop; Debian: apt-get install wrk) on fresh servers, A
and B alternating round by round (A, B, A, B, ...), and reported as the median over rounds of
the per-round ratio A/B, so slow drift of a noisy machine hits both sides alike. Cases:

- paths ``/hello`` (13 bytes of text) and ``/json`` (a 1 KiB JSON body) of benchmarks.refapp;
- keep-alive connections (wrk's default) and a new connection per request
  (``Connection: close``);
- 1 and 2 workers.

Pairs: asgisup vs uvicorn with httptools + uvloop, the same with h11 + asyncio, and asgisup
with ``--max-inflight 64`` vs no ceiling. Then memory (RSS from /proc) and the time for 8
workers to be ready.
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

from benchmarks.servers import ROOT, ServerSpec, serving

FAST = ("--http", "httptools", "--loop", "uvloop")
PURE = ("--http", "h11", "--loop", "asyncio")


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
    Pair(
        "asgisup --max-inflight 64 / no ceiling",
        ServerSpec("asgisup-c64", "asgisup", 64, FAST),
        ServerSpec("asgisup-c0", "asgisup", 0, FAST),
        0.97,
    ),
)
PATHS = ("/hello", "/json")
MODES = ("keep-alive", "close")
LOGS = ROOT / "benchmarks" / "results" / "logs"


def wrk(port: int, path: str, mode: str, duration: float, connections: int) -> float:
    """Requests per second wrk measured."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s"]
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
    with serving(spec, workers, LOGS / f"throughput-{spec.key}.log") as port:
        wrk(port, path, mode, 1, args.connections)  # warm-up: imports, caches, first accepts
        return wrk(port, path, mode, args.duration, args.connections)


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
    proc = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    ready = 0
    for line in proc.stderr:
        ready += " ready" in line
        if ready == 8:
            break
    out["asgisup_8_workers_ready_s"] = time.monotonic() - started
    proc.terminate()
    proc.wait(30)
    return out


def _title(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=lambda s: [int(w) for w in s.split(",")], default=[1, 2])
    parser.add_argument("--pairs", default="0,1,2", help="which pairs, by index")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 s, 1 worker")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.workers = 2, 2.0, [1]
    rows = []
    for index in (int(i) for i in args.pairs.split(",")):
        pair = PAIRS[index]
        print(f"{pair.name} (target >= {pair.target})", flush=True)
        rows += compare(pair, args)
    figures = memory_and_start()
    verdicts = []
    for pair in PAIRS:
        ratios = [r["ratio"] for r in rows if r["pair"] == pair.name]
        if ratios:
            worst = min(ratios)  # type: ignore[type-var]
            verdicts.append((f"{pair.name}: worst case {worst:.3f}", worst >= pair.target))
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
    out = (
        ROOT
        / "benchmarks"
        / "results"
        / ("throughput-quick.json" if args.quick else "throughput.json")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
