"""The reference app every server in the benchmarks runs: raw ASGI 3, no framework.

Routes:

- ``GET /hello``: ``Hello, world!`` as text/plain (the throughput check).
- ``GET /json``: a 1 KiB JSON document, serialized once at import (benchmarks/throughput.py).
- ``GET /work?ms=X&io=Y``: first ``await asyncio.sleep(Y / 1000)`` when Y > 0 (I/O the event
  loop can overlap, like a database call), then ``time.sleep(X / 1000)``: work that blocks the
  event loop, like CPU work in an ``async def`` handler. Answers ``{"pid": <worker pid>}`` as
  JSON with the header ``x-service-ms``: the wall time the blocking part took, in ms.
- WebSocket ``/ws``: accepts, then echoes every message back unchanged (text as text, bytes as
  bytes) until the client disconnects (the WebSocket case of benchmarks/throughput.py). Any
  other WebSocket path is refused with close code 1008 before the accept, which the server
  turns into an HTTP 403 answer to the handshake.

Why ``time.sleep`` and not a CPU loop: the blocking part must hold the worker's event loop the
way CPU work does, but the benchmark runs 4 workers (and the load generator) on machines with
as few as 2 cores. Spinning workers would compete for the cores, so a request's service time
would depend on how many others run at that moment, and the replay against the M/G/c ideal
(which assumes a service time of its own for each request) would measure the CPU scheduler,
not the server. A sleeping worker's loop is blocked just the same and costs no CPU.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

Message = MutableMapping[str, Any]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HELLO = b"Hello, world!"
# A 1 KiB JSON document, serialized once: the throughput benchmark measures the server.
JSON_BODY = json.dumps(
    {"items": [{"id": i, "name": f"item-{i:04d}", "price": i * 1.25} for i in range(21)]}
).encode()[:1024]


async def _respond(
    send: Send, status: int, body: bytes, content_type: bytes, extra: list[tuple[bytes, bytes]]
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode("ascii")),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _milliseconds(query: dict[str, str], name: str) -> float:
    """The non-negative number of milliseconds in ``query[name]`` (0 when absent).

    Raises ValueError when the value is not a finite non-negative number.
    """
    value = float(query.get(name, "0"))
    if not 0 <= value < float("inf"):
        raise ValueError(f"{name} must be a non-negative number of milliseconds")
    return value


async def _work(scope: Scope, send: Send) -> None:
    query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
    try:
        blocking_ms = _milliseconds(query, "ms")
        io_ms = _milliseconds(query, "io")
    except ValueError as exc:
        await _respond(send, 400, str(exc).encode(), b"text/plain; charset=utf-8", [])
        return
    if io_ms > 0:
        await asyncio.sleep(io_ms / 1000)
    started = time.perf_counter()
    if blocking_ms > 0:
        time.sleep(blocking_ms / 1000)  # blocks the loop, costs no CPU: see the module docstring
    service_ms = (time.perf_counter() - started) * 1000
    body = json.dumps({"pid": os.getpid()}).encode()
    extra = [(b"x-service-ms", f"{service_ms:.3f}".encode("ascii"))]
    await _respond(send, 200, body, b"application/json", extra)


async def _lifespan(receive: Receive, send: Send) -> None:
    # Nothing to set up; acknowledge both events so servers that run lifespan ("auto") are happy.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _websocket(scope: Scope, receive: Receive, send: Send) -> None:
    if (await receive())["type"] != "websocket.connect":
        return  # the client left before the app saw the handshake
    if scope["path"] != "/ws":
        await send({"type": "websocket.close", "code": 1008})  # 1008: policy violation
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return  # websocket.disconnect
        # ASGI: exactly one of "text" and "bytes" is set; the other is absent or None.
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI 3 entry point (``benchmarks.refapp:app``)."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] == "websocket":
        await _websocket(scope, receive, send)
        return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/hello":
        await _respond(send, 200, HELLO, b"text/plain; charset=utf-8", [])
    elif path == "/json":
        await _respond(send, 200, JSON_BODY, b"application/json", [])
    elif path == "/work":
        await _work(scope, send)
    else:
        await _respond(send, 404, b"Not Found", b"text/plain; charset=utf-8", [])
