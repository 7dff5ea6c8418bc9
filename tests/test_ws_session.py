"""The ASGI side of a WebSocket, in process, on a stand-in for the HTTP connection: the
receive queue's back-pressure and the errors ``send()`` raises."""

from __future__ import annotations

import asyncio
import struct
from types import SimpleNamespace

import pytest

from asgisup.protocols.http.cycle import ClientDisconnected
from asgisup.protocols.http.events import RequestHead
from asgisup.protocols.websocket import handshake
from asgisup.protocols.websocket.session import WebSocketSession, WsSettings
from asgisup.protocols.websocket.websockets_engine import WebsocketsEngine
from asgisup.protocols.websocket.wsproto_engine import WsprotoEngine
from tests.wsframes import frame

HEAD = RequestHead(
    b"GET",
    b"/",
    "1.1",
    [
        (b"host", b"h"),
        (b"upgrade", b"websocket"),
        (b"connection", b"upgrade"),
        (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
        (b"sec-websocket-version", b"13"),
    ],
)


class Connection:
    """What a session uses of HttpConnection, recorded."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.written = bytearray()
        self.reading_changes = 0
        self.established = False
        self.closed = False
        self.write_paused = False
        self.client = ("127.0.0.1", 1)
        self.settings = SimpleNamespace(access_log=False)
        self.gate = SimpleNamespace(responded=lambda status, seconds: None)

    def update_reading(self) -> None:
        self.reading_changes += 1

    def write(self, data: bytes) -> None:
        self.written += data

    def default_headers(self) -> bytes:
        return b""

    def websocket_established(self) -> None:
        self.established = True

    def close(self) -> None:
        self.closed = True

    abort = close

    async def drain(self) -> None:
        pass


async def accepted(engine: type, **settings: object) -> tuple[WebSocketSession, Connection]:
    conn = Connection()
    ws = WsSettings(engine=engine, ping_interval=0, **settings)  # type: ignore[arg-type]
    scope = {"type": "websocket", "path": "/", "query_string": b"", "http_version": "1.1"}
    session = WebSocketSession(conn, scope, handshake.check(HEAD), ws, b"")  # type: ignore[arg-type]
    assert await session.receive() == {"type": "websocket.connect"}
    await session.send({"type": "websocket.accept"})
    assert conn.written.startswith(b"HTTP/1.1 101 ")
    assert conn.established
    conn.written.clear()
    return session, conn


@pytest.mark.parametrize("engine", [WsprotoEngine, WebsocketsEngine])
async def test_a_full_queue_stops_reading_and_nothing_is_dropped(engine: type) -> None:
    session, conn = await accepted(engine, max_queue=3)
    session.data_received(b"".join(frame(0x1, f"m{i}".encode()) for i in range(5)))
    assert not session.wants_data()  # five waiting, three allowed: the socket is not read
    changes = conn.reading_changes
    received = [await session.receive() for _ in range(3)]
    assert session.wants_data()  # two left: reading again
    assert conn.reading_changes > changes
    received += [await session.receive() for _ in range(2)]
    assert [m["text"] for m in received] == [f"m{i}" for i in range(5)]


async def test_send_after_the_client_closed_raises_client_disconnected() -> None:
    session, conn = await accepted(WsprotoEngine)
    session.data_received(frame(0x8, struct.pack("!H", 1001)))
    assert conn.closed
    assert await session.receive() == {"type": "websocket.disconnect", "code": 1001, "reason": ""}
    with pytest.raises(ClientDisconnected):
        await session.send({"type": "websocket.send", "text": "too late"})


async def test_send_after_the_apps_own_close_is_a_runtime_error() -> None:
    session, _ = await accepted(WebsocketsEngine)
    await session.send({"type": "websocket.close", "code": 4000})
    with pytest.raises(RuntimeError, match=r"after 'websocket\.close'"):
        await session.send({"type": "websocket.send", "text": "too late"})
    session.connection_lost()


async def test_bad_messages_from_the_app_are_runtime_errors() -> None:
    session, _ = await accepted(WsprotoEngine)
    with pytest.raises(RuntimeError, match="needs 'bytes' or 'text'"):
        await session.send({"type": "websocket.send"})
    with pytest.raises(RuntimeError, match=r"expected 'websocket\.send'"):
        await session.send({"type": "websocket.accept"})
    session.connection_lost()
    assert await session.receive() == {"type": "websocket.disconnect", "code": 1006, "reason": ""}
