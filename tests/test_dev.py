"""--preload (import once in the supervisor) and --reload (restart workers on code changes)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.serverproc import TIMEOUT, ServerProcess, run_cli, wait_until


@pytest.mark.parametrize("preload", [True, False])
def test_preload_imports_once_in_the_supervisor(preload: bool) -> None:
    args = ["--workers", "2", "--max-inflight", "1"] + (["--preload"] if preload else [])
    with ServerProcess("tests.import_probe:app", *args) as server:
        server.start(wait_ready=2)
        assert server.proc is not None
        answers = [httpx.get(server.url, timeout=TIMEOUT).json() for _ in range(6)]
        for answer in answers:
            expected = server.proc.pid if preload else answer["pid"]
            assert answer["imported_in"] == expected
        assert server.stop() == 0


def test_preload_import_error_stops_before_any_worker() -> None:
    result = run_cli(
        "tests.broken.raising_import:app", "--preload", "--workers", "2", "--port", "0"
    )
    assert result.returncode == 3
    assert result.stderr.count("RuntimeError: settings.DATABASE_URL is not set") == 1
    assert "Started worker" not in result.stderr


def test_reload_restarts_workers_on_a_code_change(tmp_path: Path) -> None:
    pytest.importorskip("watchfiles", reason="--reload needs the standard extra")
    module = tmp_path / "hotapp.py"
    source = """
import json

VERSION = "{version}"


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": json.dumps(VERSION).encode()}})
"""
    module.write_text(source.format(version="one"))
    args = ("--reload", "--app-dir", str(tmp_path))
    with ServerProcess("hotapp:app", *args) as server:
        server.start()
        assert "Reload: watching" in server.log
        assert httpx.get(server.url, timeout=TIMEOUT).json() == "one"
        # The watcher process may still be starting: a change it cannot have seen is made
        # again, until it reports one (no fixed sleep to guess its start-up time).
        for attempt in range(6):
            module.write_text(source.format(version="two") + f"# edit {attempt}\n")
            try:
                server.wait_for(r"Reload: hotapp\.py changed", timeout=5)
                break
            except AssertionError:
                continue
        else:
            raise AssertionError(f"the reloader never saw the change:\n{server.log}")
        server.wait_for(r"Rolling restart done")
        wait_until(lambda: httpx.get(server.url, timeout=TIMEOUT).json() == "two")
        assert server.stop() == 0
