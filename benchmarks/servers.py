"""Start and stop the servers under test, each fresh on a free 127.0.0.1 port.

Every server runs the same app (``benchmarks.refapp:app``) with the same number of worker
processes and no access log. A server's output goes to a log file, not a pipe, so a chatty
server can never block on a full pipe while the load runs.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parent.parent
APP = "benchmarks.refapp:app"
HOST = "127.0.0.1"
BOOT_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
STRAGGLER_GRACE = 2.0  # after the main process exits, for the rest of its group to follow
PEER_SETTLE = 2.0  # after a peer first answers, time for its other workers to come up

Kind = Literal["asgisup", "uvicorn", "gunicorn"]


class ServerFailed(Exception):
    """A server did not come up; the message ends with the tail of its log."""


@dataclass(frozen=True)
class ServerSpec:
    """One server configuration under test."""

    key: str  # as named on the command line: asgisup-c1, uvicorn, ...
    kind: Kind
    ceiling: int = 0  # asgisup's --max-inflight
    extra: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        if self.kind != "asgisup":
            return self.kind
        flags = "".join(f" {flag}" for flag in self.extra)
        return f"asgisup c={self.ceiling}{flags}"

    def argv(self, port: int, workers: int) -> list[str]:
        python = [sys.executable, "-m"]
        if self.kind == "asgisup":
            return [
                *python, "asgisup", APP, "--host", HOST, "--port", str(port),
                "--workers", str(workers), "--max-inflight", str(self.ceiling),
                "--no-access-log", *self.extra,
            ]  # fmt: skip
        if self.kind == "uvicorn":
            return [
                *python, "uvicorn", APP, "--host", HOST, "--port", str(port),
                "--workers", str(workers), "--no-access-log", "--log-level", "warning",
                *self.extra,
            ]  # fmt: skip
        return [
            *python, "gunicorn", APP, "-k", "uvicorn.workers.UvicornWorker",
            "-w", str(workers), "-b", f"{HOST}:{port}", *self.extra,
        ]  # fmt: skip


def parse_server(key: str) -> ServerSpec:
    """The ServerSpec named ``key``: ``asgisup-cN`` (ceiling N), ``uvicorn`` or ``gunicorn``.

    Raises ValueError for any other name.
    """
    if key == "uvicorn":
        return ServerSpec(key, "uvicorn")
    if key == "gunicorn":
        return ServerSpec(key, "gunicorn")
    found = re.fullmatch(r"asgisup-c(\d+)", key)
    if found is None:
        raise ValueError(f"unknown server {key!r}: use asgisup-cN, uvicorn or gunicorn")
    return ServerSpec(key, "asgisup", ceiling=int(found.group(1)))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_asgisup(proc: subprocess.Popen[bytes], log: Path, workers: int) -> int:
    """Wait for asgisup's 'listening on' line and one 'ready' line per worker; its port."""
    deadline = time.monotonic() + BOOT_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        text = log.read_text(errors="replace")
        listening = re.search(r"listening on http://[\d.]+:(\d+)", text)
        ready = len(re.findall(r"Worker \d+ \[pid \d+\] ready", text))
        if listening and ready >= workers:
            return int(listening.group(1))
        time.sleep(0.05)
    raise ServerFailed(f"asgisup did not get {workers} workers ready:\n{_tail(log)}")


def hello_ok(port: int, timeout: float = 2.0) -> bool:
    """Whether GET /hello on ``port`` answers 200 right now."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(b"GET /hello HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def _wait_peer(proc: subprocess.Popen[bytes], log: Path, port: int) -> None:
    deadline = time.monotonic() + BOOT_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        if hello_ok(port):
            time.sleep(PEER_SETTLE)  # its first worker answers; give the others time to boot
            return
        time.sleep(0.1)
    raise ServerFailed(f"the server never answered /hello on port {port}:\n{_tail(log)}")


def proc_stats() -> Iterator[tuple[int, list[str]]]:
    """(pid, fields of /proc/PID/stat after the command name) of every process. The name may
    hold spaces (asgisup's process titles do), so the fields are split after its ")": field 0
    is the state, then ppid, pgrp, session, ..., 11 utime, 12 stime (proc(5) numbers + 3)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # it ended meanwhile
        yield int(entry.name), stat.rpartition(")")[2].split()


def _live_members(group: int) -> list[int]:
    """Pids of the processes of process group ``group`` that still run (zombies left out)."""
    members = []
    for pid, fields in proc_stats():
        state, _, pgrp = fields[:3]
        if int(pgrp) == group and state != "Z":
            members.append(pid)
    return members


def _stop(proc: subprocess.Popen[bytes], label: str) -> None:
    """SIGTERM and wait (graceful); past the deadline, SIGKILL the server's process group."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(STOP_TIMEOUT)
    if proc.poll() is None:
        print(f"warning: {label} did not stop within {STOP_TIMEOUT:.0f} s", file=sys.stderr)
    # The server runs in a session of its own, so its group holds exactly its processes:
    # any left running once the main process is gone are workers it failed to stop.
    left = [pid for pid in _live_members(proc.pid) if pid != proc.pid]
    deadline = time.monotonic() + STRAGGLER_GRACE
    while left and proc.poll() is not None and time.monotonic() < deadline:
        time.sleep(0.05)  # helpers such as multiprocessing's resource tracker exit just after
        left = [pid for pid in _live_members(proc.pid) if pid != proc.pid]
    if left and proc.poll() is not None:
        print(f"warning: {label} left processes {left} behind; killing them", file=sys.stderr)
    if left or proc.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def pinned(cpus: str | None) -> list[str]:
    """The ``taskset -c`` prefix that runs a command on ``cpus`` (nothing for None); taskset
    execs, so the pid is the command's."""
    return ["taskset", "-c", cpus] if cpus else []


@contextmanager
def serving(spec: ServerSpec, workers: int, log: Path, cpus: str | None = None) -> Iterator[int]:
    """Run the server described by ``spec`` while the block runs; yields its port. ``cpus``
    (a ``taskset -c`` list) pins the server and its workers to those CPUs.

    Raises ServerFailed when it does not come up within BOOT_TIMEOUT.
    """
    with serving_process(spec, workers, log, cpus) as (port, _):
        yield port


@contextmanager
def serving_process(
    spec: ServerSpec, workers: int, log: Path, cpus: str | None = None, cwd: Path = ROOT
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """:func:`serving`, also yielding the server's process: the leader of a new session, so
    its workers are the processes of that session. ``cwd`` is where it runs: another
    checkout of asgisup runs its own code there (``python -m`` looks in the cwd first)."""
    port = free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*pinned(cpus), *spec.argv(port, workers)],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        if spec.kind == "asgisup":
            port = _wait_asgisup(proc, log, workers)
        else:
            _wait_peer(proc, log, port)
        yield port, proc
    finally:
        _stop(proc, spec.label)
