"""The lifespan scope: startup before serving, shutdown after draining, failures stop the server."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.serverproc import ServerProcess


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_startup_state_and_shutdown(tmp_path: Path, loop: str) -> None:
    marker = tmp_path / "shutdown"
    with ServerProcess(
        "tests.apps:app", "--loop", loop, env={"ASGISUP_TEST_SHUTDOWN_MARKER": str(marker)}
    ) as server:
        server.start()
        scope = httpx.get(server.url + "/scope", timeout=30).json()
        assert scope["state"] == ["started"]
        assert server.stop() == 0, server.log
    (pid,) = server.ready_pids
    assert Path(f"{marker}.{pid}").read_text() == "shutdown"


def test_startup_failure_stops_the_server_and_shows_the_message_once() -> None:
    with ServerProcess(
        "tests.apps:app", "--workers", "2", env={"ASGISUP_TEST_FAIL_STARTUP": "1"}
    ) as server:
        server.start(wait_ready=0)
        code = server.wait()
    assert code == 3, server.log
    assert server.log.count("database unreachable") == 1, server.log
    assert "Traceback" not in server.log.split("database unreachable")[0].split("\n")[-1]


def test_auto_serves_an_app_without_lifespan() -> None:
    with ServerProcess("tests.apps:no_lifespan") as server:
        server.start()
        assert httpx.get(server.url, timeout=30).json() == {"ok": True}
        assert "lifespan' protocol appears unsupported" in server.log
        assert server.stop() == 0


def test_on_requires_lifespan_support() -> None:
    with ServerProcess("tests.apps:no_lifespan", "--lifespan", "on") as server:
        server.start(wait_ready=0)
        assert server.wait() == 3
    assert "AssertionError" in server.log


def test_off_skips_lifespan(tmp_path: Path) -> None:
    marker = tmp_path / "shutdown"
    with ServerProcess(
        "tests.apps:app",
        "--lifespan",
        "off",
        env={"ASGISUP_TEST_SHUTDOWN_MARKER": str(marker)},
    ) as server:
        server.start()
        assert httpx.get(server.url + "/scope", timeout=30).json()["state"] == []
        assert server.stop() == 0
    assert not list(tmp_path.iterdir())
