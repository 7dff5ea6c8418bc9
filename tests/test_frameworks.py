"""Starlette, FastAPI and Django, each under asgisup: requests, streaming, an upload, lifespan."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from websockets.asyncio.client import connect

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
        assert "Traceback" not in log, log[max(0, log.find("Traceback") - 300) :]
        if framework == "django":
            assert "lifespan' protocol appears unsupported" in log


async def test_fastapi_websocket_endpoint_under_four_workers() -> None:
    with ServerProcess(
        "tests.frameworks.fastapi_app:app", "--workers", "4", "--max-inflight", "1"
    ) as server:
        server.start(wait_ready=4)
        url = server.url.replace("http://", "ws://") + "/ws"

        async def chat(client: int) -> int:
            async with connect(url, subprotocols=["chat"], open_timeout=TIMEOUT) as ws:
                assert ws.subprotocol == "chat"
                pid = json.loads(await ws.recv())["pid"]
                for count in range(1, 4):
                    await ws.send(json.dumps({"client": client, "n": count}))
                    answer = json.loads(await ws.recv())
                    assert answer == {"echo": {"client": client, "n": count}, "count": count}
                return int(pid)

        # Twelve at once, three times the workers: an open WebSocket holds no request slot,
        # so with --max-inflight 1 every one of them is still served.
        pids = await asyncio.gather(*(chat(client) for client in range(12)))
        assert set(pids) <= set(server.ready_pids)
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            assert (await client.get(server.url + "/")).status_code == 200
        assert server.stop() == 0
        assert "Traceback" not in server.log
