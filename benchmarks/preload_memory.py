"""Memory per worker with and without --preload: PSS (proportional set size, shared pages
divided among the processes that share them) from /proc/PID/smaps_rollup.

    .venv/bin/python -m benchmarks.preload_memory [--workers 4] [--app main:app]

Starts the example FastAPI app (examples/fastapi_app) each way, sends a few requests so every
worker has served, and prints the supervisor's and each worker's PSS and their total.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    found = re.search(r"^Pss:\s+(\d+) kB", text, re.MULTILINE)
    assert found, text
    return int(found.group(1))


def measure(preload: bool, workers: int, app: str) -> tuple[int, list[int]]:
    """(supervisor PSS, workers' PSS) in KiB."""
    command = [sys.executable, "-m", "asgisup", app, "--app-dir", "examples/fastapi_app",
               "--port", "0", "--workers", str(workers), "--no-access-log"]  # fmt: skip
    if preload:
        command.append("--preload")
    proc = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    url, pids = "", []
    for line in proc.stderr:
        if found := re.search(r"listening on (http://\S+)", line):
            url = found.group(1)
        if found := re.search(r"\[pid (\d+)\] ready", line):
            pids.append(int(found.group(1)))
            if len(pids) == workers:
                break
    for _ in range(workers * 10):
        urllib.request.urlopen(url + "/", timeout=30).read()
    time.sleep(1.0)
    try:
        return pss_kib(proc.pid), [pss_kib(pid) for pid in pids]
    finally:
        proc.terminate()
        proc.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--app", default="main:app")
    args = parser.parse_args()
    print(f"{args.app} (examples/fastapi_app), {args.workers} workers; PSS in MiB")
    for preload in (False, True):
        supervisor, workers = measure(preload, args.workers, args.app)
        total = supervisor + sum(workers)
        print(
            f"{'--preload' if preload else 'default  '}: supervisor {supervisor / 1024:6.1f}, "
            f"workers {' '.join(f'{w / 1024:5.1f}' for w in workers)} "
            f"(mean {statistics.mean(workers) / 1024:5.1f}), total {total / 1024:6.1f}"
        )


if __name__ == "__main__":
    main()
