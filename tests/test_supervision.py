"""Fault injection against the supervisor: kills, blocked loops, restarts, recycling, resizing,
crash loops, log rotation and reaping as PID 1. Real processes and real signals throughout."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serverproc import ROOT, TIMEOUT, ServerProcess, free_port, run_cli, wait_until


class Stream:
    """Requests one after another, each on a new connection, until stopped (bounded)."""

    def __init__(self, url: str, path: str = "/pid", limit: int = 2000) -> None:
        self.url = url + path
        self.limit = limit
        self.answers: list[dict[str, Any]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)

    def _run(self) -> None:
        while not self._stop.is_set() and len(self.answers) + len(self.failures) < self.limit:
            try:
                response = httpx.get(self.url, timeout=TIMEOUT)
                response.raise_for_status()
                self.answers.append(response.json())
            except httpx.HTTPError as exc:
                self.failures.append(repr(exc))
            time.sleep(0.005)

    def wait_for_answers(self, count: int) -> None:
        """Until ``count`` more answers than now have come back."""
        target = len(self.answers) + count
        wait_until(lambda: len(self.answers) >= target or bool(self.failures))


def _hold(server: ServerProcess, marker: Path) -> tuple[threading.Thread, dict[str, Any]]:
    """A request that holds its worker until ``marker`` exists; returns its thread and outcome."""
    outcome: dict[str, Any] = {}

    def hold() -> None:
        try:
            outcome["answer"] = httpx.get(f"{server.url}/hold?f={marker}", timeout=TIMEOUT).json()
        except httpx.HTTPError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    wait_until(Path(f"{marker}.started").exists)
    return thread, outcome


def test_killed_worker_loses_only_what_it_held(tmp_path: Path) -> None:
    """kill -9 under a steady stream: the queue goes to the sibling, the worker is replaced."""
    marker = tmp_path / "release"
    args = ("--workers", "2", "--max-inflight", "1")
    with ServerProcess("tests.apps:app", *args) as server:
        server.start(wait_ready=2)
        holder, held = _hold(server, marker)
        victim = int(Path(f"{marker}.started").read_text())
        with Stream(server.url) as stream:
            stream.wait_for_answers(5)
            os.kill(victim, signal.SIGKILL)
            server.wait_for(rf"\[pid {victim}\] killed by SIGKILL unexpectedly; restarting")
            fresh = int(server.wait_for(r"Worker \d \[pid (\d+)\] ready").group(1))
            stream.wait_for_answers(20)
        holder.join(TIMEOUT)
        assert "error" in held  # the one request that had reached the killed worker
        assert stream.failures == []
        assert victim not in {answer["pid"] for answer in stream.answers}
        assert fresh != victim
        assert server.stop() == 0


def test_blocked_loop_is_replaced_while_the_others_serve() -> None:
    args = ("--workers", "2", "--max-inflight", "1", "--timeout-worker", "3")
    with ServerProcess("tests.apps:app", *args) as server:
        server.start(wait_ready=2)
        blocked: dict[str, Any] = {}

        def block() -> None:
            try:
                httpx.get(f"{server.url}/block?s=60", timeout=TIMEOUT)
            except httpx.HTTPError as exc:
                blocked["error"] = exc

        blocker = threading.Thread(target=block, daemon=True)
        blocker.start()
        with Stream(server.url) as stream:
            line = server.wait_for(r"\[pid (\d+)\]: its event loop has been blocked for ([\d.]+)s")
            stuck = int(line.group(1))
            blocked_from = len(stream.answers)  # before the block, it may have served some
            assert float(line.group(2)) >= 3
            assert "its latest request: GET /block" in line.string
            server.wait_for(rf"\[pid {stuck}\] did not stop in time; killing it")
            server.wait_for(rf"\[pid {stuck}\] killed by SIGKILL")
            stream.wait_for_answers(10)
        blocker.join(TIMEOUT)
        assert "error" in blocked
        assert stream.failures == []
        assert stuck not in {answer["pid"] for answer in stream.answers[blocked_from:]}
        assert server.stop() == 0


def test_rolling_restart_serves_new_code_without_a_failed_request(tmp_path: Path) -> None:
    version = tmp_path / "version"
    version.write_text("one")
    env = {"ASGISUP_TEST_VERSION_FILE": str(version)}
    args = ("--workers", "2", "--max-inflight", "1")
    with ServerProcess("tests.versioned:app", *args, env=env) as server:
        server.start(wait_ready=2)
        with Stream(server.url, "/") as stream:
            stream.wait_for_answers(10)
            version.write_text("two")
            server.signal(signal.SIGHUP)
            server.wait_for(r"Rolling restart done: every worker is of generation 2")
            # An old worker told to stop may still answer until it has handled that signal.
            old = set(server.ready_pids)
            wait_until(lambda: all(f"[pid {pid}] exited" in server.log for pid in old))
            during = len(stream.answers)
            stream.wait_for_answers(10)
        assert stream.failures == []
        assert stream.answers[0]["version"] == "one"
        assert {answer["version"] for answer in stream.answers[during:]} == {"two"}
        assert old.isdisjoint(answer["pid"] for answer in stream.answers[during:])
        assert server.stop() == 0


def test_failed_replacement_keeps_the_running_workers(tmp_path: Path) -> None:
    version = tmp_path / "version"
    version.write_text("one")
    env = {"ASGISUP_TEST_VERSION_FILE": str(version)}
    with ServerProcess("tests.versioned:app", "--workers", "2", env=env) as server:
        server.start(wait_ready=2)
        version.unlink()  # the next import fails
        server.signal(signal.SIGHUP)
        server.wait_for(r"rolling restart abandoned, the running workers keep serving")
        answers = {httpx.get(server.url, timeout=TIMEOUT).json()["version"] for _ in range(5)}
        assert answers == {"one"}
        assert server.stop() == 0


def test_ttin_and_ttou_change_the_worker_count() -> None:
    with ServerProcess("tests.apps:app", "--workers", "1") as server:
        server.start()
        server.signal(signal.SIGTTIN)
        server.wait_for(r"Worker count is now 2")
        added = int(server.wait_for(r"Worker 2 \[pid (\d+)\] ready").group(1))
        server.signal(signal.SIGTTOU)
        server.wait_for(rf"Worker 2 \[pid {added}\] is surplus; stopping it")
        server.wait_for(rf"Worker 2 \[pid {added}\] exited with code 0")
        server.signal(signal.SIGTTOU)
        server.wait_for(r"Worker count stays 1")
        assert httpx.get(server.url + "/pid", timeout=TIMEOUT).json()["pid"] == server.ready_pids[0]
        assert server.stop() == 0


def test_max_requests_recycles_without_a_failed_request() -> None:
    args = ("--workers", "2", "--max-inflight", "1", "--max-requests", "10")
    with ServerProcess("tests.apps:app", *args) as server:
        server.start(wait_ready=2)
        with Stream(server.url) as stream:
            server.wait_for(r"served \d+ requests \(--max-requests\); replacing it")
            server.wait_for(r"served \d+ requests \(--max-requests\); replacing it")
            server.wait_for(r"exited with code 0")
            stream.wait_for_answers(10)
        assert stream.failures == []
        assert len({answer["pid"] for answer in stream.answers}) > 2
        assert server.stop() == 0


def test_max_worker_memory_recycles_a_fat_worker() -> None:
    args = ("--workers", "2", "--max-inflight", "1", "--max-worker-memory", "150")
    with ServerProcess("tests.apps:app", *args) as server:
        server.start(wait_ready=2)
        with Stream(server.url) as stream:
            stream.wait_for_answers(3)
            fat = httpx.get(server.url + "/grow?mb=200", timeout=TIMEOUT).json()["pid"]
            line = server.wait_for(rf"\[pid {fat}\] uses (\d+) MiB \(--max-worker-memory 150\)")
            assert int(line.group(1)) > 150
            server.wait_for(rf"\[pid {fat}\] exited with code 0")
            stream.wait_for_answers(10)
        assert stream.failures == []
        assert server.stop() == 0


def test_a_worker_that_crashes_after_boot_is_restarted_with_back_off() -> None:
    env = {"ASGISUP_TEST_CRASH_AFTER": "0.2"}
    with ServerProcess("tests.apps:app", env=env) as server:
        server.start()
        window = 6.0
        time.sleep(window)
        restarts = server.log.count("unexpectedly; restarting")
        # Without back-off a worker that lives ~0.5 s is restarted about 12 times in 6 s.
        assert 2 <= restarts <= 6, server.log
        delays = [float(d) for d in re.findall(r"restarting in ([\d.]+)s", server.log)]
        assert delays == sorted(delays) and delays, server.log
        assert server.stop() == 0


def test_boot_timeout_replaces_a_worker_that_never_gets_ready() -> None:
    env = {"SLOW_IMPORT_SECONDS": "30"}
    args = ("--timeout-worker-boot", "1")
    with ServerProcess("tests.slow_import:app", *args, env=env) as server:
        server.start(wait_ready=0)
        first = server.wait_for(r"Worker 1 \[pid (\d+)\] not ready after 1s").group(1)
        server.wait_for(rf"\[pid {first}\] killed by SIGKILL")
        server.wait_for(r"Started worker 1 \[pid \d+\]")
        assert server.stop() == 0


def test_slow_import_within_the_boot_timeout_is_not_a_hang() -> None:
    env = {"SLOW_IMPORT_SECONDS": "2"}
    with ServerProcess("tests.slow_import:app", "--timeout-worker-boot", "20", env=env) as server:
        server.start()
        assert httpx.get(server.url + "/pid", timeout=TIMEOUT).status_code == 200
        assert "not ready after" not in server.log
        assert server.stop() == 0


def test_usr1_reopens_the_log_file(tmp_path: Path) -> None:
    log = tmp_path / "asgisup.log"
    port = free_port()
    command = [sys.executable, "-m", "asgisup", "tests.apps:app", "--port", str(port)]
    command += ["--workers", "2", "--log-file", str(log)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: log.exists() and log.read_text().count(" ready") == 2)
        log.rename(tmp_path / "asgisup.log.1")  # what logrotate does
        proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: log.exists() and "log files reopened" in log.read_text())
        httpx.get(f"http://127.0.0.1:{port}/pid", timeout=TIMEOUT)
        wait_until(lambda: '"GET /pid HTTP/1.1" 200' in log.read_text())
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0
    assert stderr == ""  # everything went to the file
    assert "Stopped." in log.read_text()


def test_unwritable_log_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "a.log"
    result = run_cli("tests.apps:app", "--log-file", str(missing))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"asgisup: error: --log-file {missing}: cannot open it (No such file or directory)"
    ]


def _children(pid: int) -> list[tuple[int, str, str]]:
    """(pid, state, command) of every process whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        command, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :]
        state, ppid = rest.split()[:2]
        if int(ppid) == pid:
            found.append((int(entry.name), state, command))
    return found


def _can_unshare() -> str | None:
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        return f"cannot create a PID namespace here: {probe.stderr.strip()}"
    return None


@pytest.mark.skipif(_can_unshare() is not None, reason=str(_can_unshare()))
def test_as_pid_1_it_reaps_orphans_and_exits_cleanly() -> None:
    unshare = ["unshare", "--pid", "--fork", "--mount-proc"]
    command = [*unshare, sys.executable, "-m", "asgisup", "tests.apps:app", "--port", "0"]
    with ServerProcess("", command=command) as server:
        server.start()
        assert "Supervisor [pid 1]" in server.log
        assert server.proc is not None
        (supervisor,) = [pid for pid, _, _ in _children(server.proc.pid)]
        httpx.get(server.url + "/orphan?s=1", timeout=TIMEOUT)
        # The shell's background sleep is orphaned and adopted by the namespace's PID 1.
        wait_until(lambda: any(cmd == "sleep" for _, _, cmd in _children(supervisor)))
        wait_until(lambda: not any(cmd == "sleep" for _, _, cmd in _children(supervisor)))
        assert all(state != "Z" for _, state, _ in _children(supervisor))
        os.kill(supervisor, signal.SIGTERM)  # unshare itself ignores SIGTERM while it waits
        assert server.wait() == 0


def test_second_interrupt_stops_at_once(tmp_path: Path) -> None:
    marker = tmp_path / "never"  # the held request is never released
    with ServerProcess("tests.apps:app", "--timeout-graceful-shutdown", "600") as server:
        server.start()
        holder, held = _hold(server, marker)
        server.signal(signal.SIGINT)
        server.wait_for(r"Shutting down \(SIGINT\)")
        server.wait_for(r"draining: accepting no more, finishing 1 connection")
        server.signal(signal.SIGINT)
        server.wait_for(r"Second interrupt: stopping workers now")
        assert server.wait() == 1  # forced: long before the 600 s graceful deadline
        holder.join(TIMEOUT)
        assert "error" in held
