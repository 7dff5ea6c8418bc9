"""A plain ASGI app with WebSocket routes (HTTP requests go to tests.apps.app).

What the WebSocket routes saw at their end (the ``websocket.disconnect`` codes) is kept per
worker and served as JSON on ``GET /ws-log``, so a test can check what the app was told.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from tests.apps import app as http_app

LOG: list[dict[str, Any]] = []


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        if scope["type"] == "http" and scope["path"] == "/ws-log":
            body = json.dumps(LOG).encode()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})
            return
        await http_app(scope, receive, send)
        return
    path = scope["path"]
    query = dict(
        part.split("=", 1) for part in scope["query_string"].decode().split("&") if "=" in part
    )
    assert (await receive())["type"] == "websocket.connect"
    if path == "/deny":
        await send({"type": "websocket.close"})
        return
    if path == "/deny-custom":
        headers = [(b"content-type", b"text/plain"), (b"x-denied", b"yes")]
        await send({"type": "websocket.http.response.start", "status": 401, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"entry"})
        return
    if path == "/raise-before-accept":
        raise RuntimeError("refused by a bug")
    if path == "/no-answer":
        return
    if path == "/accept-when":  # the handshake waits until the file ``f`` exists
        while not os.path.exists(query["f"]):
            await asyncio.sleep(0.01)
    subprotocols = scope["subprotocols"]
    await send(
        {
            "type": "websocket.accept",
            "subprotocol": query.get("sub") if query.get("sub") in subprotocols else None,
            "headers": [(b"x-accepted-by", str(os.getpid()).encode())],
        }
    )
    if path == "/scope":
        shown = {k: v for k, v in scope.items() if k not in ("headers", "state", "raw_path")}
        shown["query_string"] = scope["query_string"].decode()
        await send({"type": "websocket.send", "text": json.dumps(shown)})
    elif path == "/raise-after-accept":
        raise RuntimeError("broke after accepting")
    elif path == "/return-after-accept":
        return
    elif path == "/flood":
        chunk = b"x" * int(query.get("size", "65536"))
        for _ in range(int(query.get("n", "100"))):
            await send({"type": "websocket.send", "bytes": chunk})
    elif path == "/sleep-then-echo":
        await asyncio.sleep(float(query.get("s", "1")))
    await _echo(path, receive, send)


async def _echo(path: str, receive: Any, send: Any) -> None:
    """Echo until the client leaves; ``close CODE REASON`` as text makes the app close."""
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            LOG.append({"path": path, "code": message["code"], "reason": message.get("reason")})
            return
        text = message.get("text")
        if text is not None and text.startswith("close "):
            _, code, reason = text.split(" ", 2)
            await send({"type": "websocket.close", "code": int(code), "reason": reason})
            LOG.append({"path": path, "closed": int(code)})
            return
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
