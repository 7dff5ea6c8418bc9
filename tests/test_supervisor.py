"""The process model: workers, restarts, graceful stop, boot failures, run(), env config."""

from __future__ import annotations

import os
import signal
import socket
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.serverproc import ROOT, TIMEOUT, ServerProcess, wait_until


def test_graceful_stop_finishes_in_flight_requests(tmp_path: Path) -> None:
    mark = tmp_path / "started"
    with ServerProcess("tests.apps:app", "--workers", "2") as server:
        server.start(wait_ready=2)
        with ThreadPoolExecutor(4) as pool:
            url = f"{server.url}/sleep?s=1.5&mark={mark}"
            futures = [pool.submit(httpx.get, url, timeout=30) for _ in range(4)]
            # Stop once all four requests are inside the workers' app.
            wait_until(lambda: len(list(tmp_path.iterdir())) == 4)
            server.signal(signal.SIGTERM)
            statuses = [future.result().status_code for future in futures]
        assert statuses == [200] * 4
        assert server.wait() == 0, server.log
    assert "Shutting down (SIGTERM)" in server.log


def test_graceful_stop_waits_for_app_code_that_outlives_its_response(tmp_path: Path) -> None:
    marker = tmp_path / "finished"
    with ServerProcess("tests.apps:app") as server:
        server.start()
        # The response is complete and the connection closed; the app still runs for 0.5 s.
        response = httpx.get(f"{server.url}/linger?s=0.5&f={marker}", timeout=TIMEOUT)
        assert response.status_code == 200
        server.signal(signal.SIGTERM)
        assert server.wait() == 0, server.log
    assert marker.read_text() == "finished"
    assert "Traceback" not in server.log and "Task was destroyed" not in server.log


def test_graceful_stop_does_not_wait_for_the_apps_own_background_tasks() -> None:
    with ServerProcess("tests.apps:app", "--timeout-graceful-shutdown", "300") as server:
        server.start()
        assert httpx.get(f"{server.url}/spawn-forever", timeout=TIMEOUT).status_code == 200
        server.signal(signal.SIGTERM)
        assert server.wait() == 0, server.log  # long before the 300 s deadline
    assert "deadline" not in server.log


def test_killed_worker_is_replaced() -> None:
    with ServerProcess("tests.apps:app", "--workers", "2") as server:
        server.start(wait_ready=2)
        victim = server.ready_pids[0]
        os.kill(victim, signal.SIGKILL)
        server.wait_for(rf"\[pid {victim}\] killed by SIGKILL unexpectedly; restarting")
        match = server.wait_for(r"Worker (\d+) \[pid (\d+)\] ready")
        assert int(match.group(2)) != victim
        pids = {httpx.get(server.url + "/pid", timeout=30).json()["pid"] for _ in range(10)}
        assert victim not in pids
        assert server.stop() == 0


@pytest.mark.parametrize(
    ("app", "shown"),
    [
        ("tests.broken.bad_import:app", "No module named 'this_module_does_not_exist'"),
        ("tests.broken.raising_import:app", "RuntimeError: settings.DATABASE_URL is not set"),
        ("tests.no_such_module:app", "could not import module 'tests.no_such_module'"),
        ("tests.apps:missing_attribute", "attribute 'missing_attribute' not found"),
    ],
)
def test_app_that_cannot_load_stops_the_server(app: str, shown: str) -> None:
    started = time.monotonic()
    with ServerProcess(app, "--workers", "3") as server:
        server.start(wait_ready=0)
        code = server.wait()
    assert code == 3, server.log
    assert time.monotonic() - started < 30
    assert server.log.count(shown) == 1, server.log
    assert "Started worker" in server.log  # workers were started, then all stopped
    assert "asgisup/" not in server.log  # no frames of asgisup's own code


def test_run_with_an_app_object_and_two_workers(tmp_path: Path) -> None:
    script = tmp_path / "serve.py"
    script.write_text(
        textwrap.dedent(
            """
            import os
            import asgisup

            async def app(scope, receive, send):
                if scope["type"] != "http":
                    return
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": str(os.getpid()).encode()})

            asgisup.run(app, workers=2, port=0, lifespan="off")
            """
        )
    )
    with ServerProcess("", command=[sys.executable, str(script)]) as server:
        server.start(wait_ready=2)
        seen = {int(httpx.get(server.url, timeout=30).text) for _ in range(4)}
        assert seen <= set(server.ready_pids)
        assert server.stop() == 0, server.log


def test_environment_configures_and_command_line_wins() -> None:
    env = {"ASGISUP_WORKERS": "3", "ASGISUP_MAX_INFLIGHT": "1", "WEB_CONCURRENCY": "5"}
    with ServerProcess("tests.apps:app", env=env) as server:
        server.start(wait_ready=3)
        assert "3 workers" in server.log and "max in-flight 1 per worker" in server.log
        assert server.stop() == 0
    with ServerProcess("tests.apps:app", "--workers", "2", env=env) as server:
        server.start(wait_ready=2)
        assert "2 workers" in server.log
        assert server.stop() == 0
    with ServerProcess("tests.apps:app", env={"WEB_CONCURRENCY": "2"}) as server:
        server.start(wait_ready=2)
        assert "2 workers" in server.log
        assert server.stop() == 0


def test_held_request_does_not_delay_the_other_worker(tmp_path: Path) -> None:
    """2 workers, ceiling 1: while one worker holds a request, the other serves at once."""
    marker = tmp_path / "release"
    with ServerProcess("tests.apps:app", "--workers", "2", "--max-inflight", "1") as server:
        server.start(wait_ready=2)
        result: dict[str, object] = {}

        def hold() -> None:
            result["held"] = httpx.get(server.url + f"/hold?f={marker}", timeout=60).json()

        holder = threading.Thread(target=hold)
        holder.start()
        try:
            wait_until(Path(f"{marker}.started").exists)
            answers = [httpx.get(server.url + "/pid", timeout=30).json()["pid"] for _ in range(5)]
            # Served while the other request is still held: none can come from its worker.
            assert "held" not in result
        finally:
            marker.touch()
            holder.join(60)
        held_pid = result["held"]["pid"]  # type: ignore[index]
        assert held_pid not in answers and len(set(answers)) == 1
        assert server.stop() == 0


def test_fastapi_example_spreads_over_workers() -> None:
    with ServerProcess(
        "main:app",
        "--app-dir",
        str(ROOT / "examples" / "fastapi_app"),
        "--workers",
        "4",
        "--max-inflight",
        "1",
    ) as server:
        server.start(wait_ready=4)
        with ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(
                    lambda _: httpx.get(server.url + "/slow?ms=200", timeout=30).json(), range(8)
                )
            )
        assert len({answer["pid"] for answer in answers}) > 1
        hello = httpx.get(server.url + "/", timeout=30).json()
        assert hello["hello"] == "world" and hello["booted_at"] > 0
        assert server.stop() == 0, server.log


def test_factory() -> None:
    with ServerProcess("tests.apps:make_app", "--factory") as server:
        server.start()
        assert httpx.get(server.url, timeout=30).json() == {"built": True}
        assert server.stop() == 0


def test_idle_keep_alive_connection_is_closed_after_the_timeout() -> None:
    with ServerProcess("tests.apps:app", "--timeout-keep-alive", "0.5") as server:
        server.start()
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(b"GET /pid HTTP/1.1\r\nHost: h\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            started = time.monotonic()
            assert sock.recv(65536) == b""  # the server closed the idle connection
            assert time.monotonic() - started < 25
        assert server.stop() == 0


def test_keep_alive_timeout_counts_from_the_end_of_the_last_response() -> None:
    """One idle timer per connection, left running while requests are served: a request
    longer than the timeout is not cut, and the idle time counts from its response."""
    with ServerProcess("tests.apps:app", "--timeout-keep-alive", "1") as server:
        server.start()
        with socket.create_connection(server.address, timeout=30) as sock:
            sock.sendall(b"GET /sleep?s=1.5 HTTP/1.1\r\nHost: h\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")  # 1.5 s: past the timeout
            time.sleep(0.5)  # the timer set when the connection opened has fired by now
            sock.sendall(b"GET /pid HTTP/1.1\r\nHost: h\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            answered = time.monotonic()
            assert sock.recv(65536) == b""  # idle for the timeout: closed
            assert 0.9 <= time.monotonic() - answered < 25
        assert server.stop() == 0


def test_stop_while_workers_boot_is_clean() -> None:
    """A stop that finds workers still importing the app ends them; nothing is forced."""
    with ServerProcess(
        "tests.slow_import:app", "--workers", "2", env={"SLOW_IMPORT_SECONDS": "30"}
    ) as server:
        server.start(wait_ready=0)
        server.wait_for(r"Started worker 2")
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < 20  # not the 30 s import, nor a forced kill
        assert "did not stop in time" not in server.log
