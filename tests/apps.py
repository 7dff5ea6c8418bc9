"""Plain ASGI apps the tests serve (no framework, so the server's behaviour is what is tested)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any


async def _json(send: Any, payload: object, status: int = 200) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client left")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def app(scope: Any, receive: Any, send: Any) -> None:
    """The test suite's multi-purpose app; the path chooses the behaviour."""
    if scope["type"] == "lifespan":
        await _lifespan(scope, receive, send)
        return
    # ASGI: path includes root_path; routing looks at what follows it, like Starlette does.
    path = scope["path"][len(scope["root_path"]) :]
    query = dict(
        part.split("=", 1) for part in scope["query_string"].decode().split("&") if "=" in part
    )
    if path == "/scope":
        shown = {k: v for k, v in scope.items() if k not in ("headers", "state", "raw_path")}
        shown["headers"] = [[n.decode(), v.decode()] for n, v in scope["headers"]]
        shown["raw_path"] = scope["raw_path"].decode()
        shown["query_string"] = scope["query_string"].decode()
        shown["state"] = sorted(scope["state"])
        shown["pid"] = os.getpid()
        await _json(send, shown)
    elif path == "/pid":
        await _json(send, {"pid": os.getpid()})
    elif path == "/echo":
        body = await _read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})
    elif path == "/stream":
        count = int(query.get("n", "3"))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(count):
            await send({"type": "http.response.body", "body": b"chunk%d\n" % i, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/block":
        # Blocks the event loop, like CPU-bound work in an async handler.
        time.sleep(float(query.get("s", "0.2")))
        await _json(send, {"pid": os.getpid(), "t": time.time()})
    elif path == "/sleep":
        if "mark" in query:  # lets a test see the request has reached a worker
            open(f"{query['mark']}.{os.getpid()}.{id(scope)}", "w").close()
        await asyncio.sleep(float(query.get("s", "0.2")))
        await _json(send, {"pid": os.getpid()})
    elif path == "/hold":
        # Holds its slot until the file named by ?f= exists: tests release it by creating it.
        marker = query["f"]
        with open(marker + ".started", "w") as started:
            started.write(str(os.getpid()))  # which worker holds it
        while not os.path.exists(marker):
            await asyncio.sleep(0.01)
        await _json(send, {"pid": os.getpid()})
    elif path == "/until-disconnect":
        # Reads until the client goes away, then says so in a file the test reads.
        messages = []
        while True:
            message = await receive()
            messages.append(message["type"])
            if message["type"] == "http.disconnect":
                break
        with open(query["f"], "w") as file:
            json.dump(messages, file)
    elif path == "/raise":
        raise RuntimeError("boom from the app")
    elif path == "/raise-after-start":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("boom after start")
    elif path == "/no-response":
        return
    elif path == "/status":
        await send(
            {"type": "http.response.start", "status": int(query.get("code", "200")), "headers": []}
        )
        await send({"type": "http.response.body", "body": b""})
    elif path == "/head-length":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]}
        )
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else b"12345"}
        )
    elif path == "/big":  # a large streamed response; records how much went out
        chunk = b"x" * 65536
        sent = 0
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            for _ in range(int(query.get("mb", "100")) * 16):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                sent += len(chunk)
            await send({"type": "http.response.body", "body": b""})
        except OSError:  # the client is gone (ASGI 2.4: send raises)
            with open(query["f"], "w") as file:
                file.write(str(sent))
    elif path == "/misbehave":  # the app breaks the ASGI protocol in one of several ways
        how = query.get("how", "")
        start = {"type": "http.response.start", "status": 200, "headers": []}
        if how == "body-first":
            await send({"type": "http.response.body", "body": b"too early"})
        elif how == "status-text":
            await send({**start, "status": "200"})
        elif how == "header-newline":
            await send({**start, "headers": [(b"x-a", b"1\r\nx-injected: 1")]})
            await send({"type": "http.response.body", "body": b"ok"})
        elif how == "after-end":
            await send(start)
            await send({"type": "http.response.body", "body": b"done"})
            await send({"type": "http.response.body", "body": b"more"})
        elif how == "short-length":
            await send({**start, "headers": [(b"content-length", b"10")]})
            await send({"type": "http.response.body", "body": b"short"})
    elif path == "/grow":
        _BALLAST.append(bytearray(int(query.get("mb", "1")) * 1024 * 1024))  # touched: resident
        await _json(send, {"pid": os.getpid(), "ballast_mb": sum(map(len, _BALLAST)) >> 20})
    elif path == "/linger":
        # Goes on after its response is complete (Django closes responses like this).
        await _json(send, {"pid": os.getpid()})
        await asyncio.sleep(float(query.get("s", "0.5")))
        with open(query["f"], "w") as marker:
            marker.write("finished")
    elif path == "/spawn-forever":
        # A task of the app's own that never ends: a graceful stop must not wait for it.
        _BACKGROUND.add(asyncio.ensure_future(asyncio.sleep(3600)))
        await _json(send, {"pid": os.getpid()})
    elif path == "/orphan":
        # The shell exits at once; its background child is orphaned to the namespace's init.
        os.system(f"sleep {float(query.get('s', '1'))} &")
        await _json(send, {"pid": os.getpid()})
    else:
        await _json(send, {"path": path}, status=404)


_BALLAST: list[bytearray] = []
_BACKGROUND: set[asyncio.Future[None]] = set()


async def _lifespan(scope: Any, receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            crash_after = os.environ.get("ASGISUP_TEST_CRASH_AFTER")
            if crash_after:  # a worker that dies shortly after every boot
                asyncio.get_running_loop().call_later(float(crash_after), os._exit, 1)
            if os.environ.get("ASGISUP_TEST_FAIL_STARTUP"):
                await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
                return
            scope["state"]["started"] = True
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            marker = os.environ.get("ASGISUP_TEST_SHUTDOWN_MARKER")
            if marker:
                with open(f"{marker}.{os.getpid()}", "w") as file:
                    file.write("shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def no_lifespan(scope: Any, receive: Any, send: Any) -> None:
    """An app that only speaks HTTP, like many small ASGI apps."""
    assert scope["type"] == "http"
    await _json(send, {"ok": True})


def make_app() -> Any:
    """An application factory, for --factory."""

    async def built(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await _json(send, {"built": True})

    return built
