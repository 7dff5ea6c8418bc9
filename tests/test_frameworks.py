"""Starlette, FastAPI and Django, each under asgisup: requests, streaming, an upload, lifespan."""

from __future__ import annotations

import httpx
import pytest

from tests.serverproc import TIMEOUT, ServerProcess

UPLOAD = b"\x00asgisup" * 40_000  # 320 kB, binary


@pytest.mark.parametrize("framework", ["starlette", "fastapi", "django"])
def test_framework_under_asgisup(framework: str) -> None:
    app = f"tests.frameworks.{framework}_app:app"
    with ServerProcess(app, "--workers", "2", "--max-inflight", "1") as server:
        server.start(wait_ready=2)
        with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
            for _ in range(4):
                home = client.get("/")
                assert home.status_code == 200 and home.json()["framework"] == framework
                if framework != "django":  # Django's ASGI handler has no lifespan
                    assert home.json()["started_by"] in server.ready_pids
            streamed = client.get("/stream")
            assert streamed.text == "".join(f"chunk {i}\n" for i in range(5))
            uploaded = client.post("/upload", files={"file": ("blob.bin", UPLOAD)})
            assert uploaded.json() == {"name": "blob.bin", "size": len(UPLOAD)}
            if framework == "fastapi":
                assert client.get("/sync").json()["pid"] in server.ready_pids
        assert server.stop() == 0
        log = server.log
        assert "Traceback" not in log
        if framework == "django":
            assert "lifespan' protocol appears unsupported" in log
