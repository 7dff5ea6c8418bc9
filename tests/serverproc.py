"""Run asgisup as a real process, as a user would, and watch its log."""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 60.0  # generous: test machines are small and noisy

_LISTENING = re.compile(r"listening on (https?://\S+|unix:\S+)")
_READY = re.compile(r"Worker (\d+) \[pid (\d+)\] ready")


# Variables asgisup reads: a command under test must not inherit them from the developer's shell.
READ = ("ASGISUP_", "WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS")


def clean_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(READ)}
    return {**env, "PYTHONPATH": str(ROOT), "COLUMNS": "100", **extra}


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m asgisup ARGS`` to completion (a command that is expected to end)."""
    return subprocess.run(
        [sys.executable, "-m", "asgisup", *args],
        cwd=ROOT,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on now (for a second server the test starts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Poll ``predicate`` (something another process does, e.g. a file it creates)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {predicate}")
        time.sleep(0.01)


async def await_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """``wait_until`` inside a running event loop: poll ``predicate`` (something the loop's
    own callbacks do, e.g. a connection's release), letting the loop run in between."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {predicate}")
        await asyncio.sleep(0.01)


class ServerProcess:
    """``python -m asgisup APP --port 0 ...``; the real port is read from the log."""

    def __init__(
        self,
        app: str,
        *args: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        command: Sequence[str] | None = None,
    ) -> None:
        self.argv = list(command or [sys.executable, "-m", "asgisup", app, *args])
        if command is None and "--port" not in args and "--uds" not in args and "--fd" not in args:
            self.argv += ["--port", "0"]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.env.setdefault("PYTHONPATH", str(ROOT))
        self.cwd = cwd or ROOT
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.ready_pids: list[int] = []

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) of a TCP server that has started."""
        host, _, port = self.url.removeprefix("http://").removeprefix("https://").partition(":")
        return host, int(port.rstrip("/"))

    def start(self, *, wait_ready: int = 1) -> ServerProcess:
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        match = self.wait_for(_LISTENING)
        self.url = match.group(1)
        for _ in range(wait_ready):
            self.ready_pids.append(int(self.wait_for(_READY).group(2)))
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float = TIMEOUT) -> re.Match[str]:
        """The first log line from now on matching ``pattern``; fails after ``timeout``."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no log line matched {regex.pattern!r}:\n{self.log}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"server exited before {regex.pattern!r}:\n{self.log}")
            self.lines.append(line)
            found = regex.search(line)
            if found:
                return found

    @property
    def log(self) -> str:
        self._drain_queue()
        return "\n".join(self.lines)

    def _drain_queue(self) -> None:
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return
            if line is None:
                self._queue.put(None)  # keep the end marker for wait_for
                return
            self.lines.append(line)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float = TIMEOUT) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        self._drain_queue()
        return code

    def stop(self, timeout: float = TIMEOUT) -> int:
        """SIGTERM and wait; kill the whole process group if it does not stop."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with_suppress_kill(self.proc)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()


def with_suppress_kill(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    proc.wait()
