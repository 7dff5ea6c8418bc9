"""Two WebSocket frame engines behind one small interface: wsproto and websockets.

Both libraries are sans-I/O: bytes in, events out, bytes to write. An engine here turns them
into the three things a session needs (a whole message, a pong, the end of the connection)
and enforces the same rules for both: messages are assembled from their fragments and held to
``max_size`` (close 1009), invalid frames or text end the connection with the library's code
(1002, 1007), pings are answered, and a close from the client is answered with a close.

Per-message deflate (RFC 7692) is each library's own implementation; the session does not
see it. websockets bounds the size of a message while it inflates it; wsproto inflates a frame
whole and the size is checked after each fragment (docs/websockets.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from asgisup.protocols.http.events import ProtocolError

MESSAGE_TOO_BIG = 1009
INVALID_DATA = 1007


@dataclass(slots=True)
class Closed:
    """The connection is over: the client closed it, or broke the protocol. Any close frame
    owed to the client is already in the engine's output."""

    code: int
    reason: str


class Pong:
    """The client answered a ping (or sent an unsolicited pong)."""


PONG = Pong()
WsEvent = str | bytes | Closed | Pong  # a whole text or binary message, or one of these


class Engine(Protocol):
    def negotiate(self, offers: list[bytes]) -> bytes | None:
        """Agree on extensions with the client's ``offers``; returns the value of the response's
        Sec-WebSocket-Extensions field (None: no extension). Called once, before any frame.
        Raises ProtocolError (400) for a malformed offer."""
        ...

    def receive(self, data: bytes) -> list[WsEvent]:
        """Events from bytes the client sent; nothing after a ``Closed``."""
        ...

    def send(self, message: str | bytes) -> None: ...

    def ping(self, payload: bytes) -> None: ...

    def close(self, code: int, reason: str = "") -> None:
        """Start the closing handshake (no-op once closing)."""
        ...

    def output(self) -> bytes:
        """The bytes to write to the client now."""
        ...


def _size(part: str | bytes | bytearray) -> int:
    if not isinstance(part, str) or part.isascii():
        return len(part)
    return len(part.encode("utf-8"))


def _join(parts: list[Any]) -> str | bytes:
    if isinstance(parts[0], str):
        return parts[0] if len(parts) == 1 else "".join(parts)
    return bytes(parts[0]) if len(parts) == 1 else b"".join(parts)


class WsprotoEngine:
    """wsproto's frame layer (its Connection), past the handshake done by the session."""

    __slots__ = ("_conn", "_extensions", "_max_size", "_out", "_parts", "_size")

    def __init__(self, max_size: int, deflate: bool) -> None:
        from wsproto.extensions import PerMessageDeflate

        self._max_size = max_size
        self._extensions: list[Any] = [PerMessageDeflate()] if deflate else []
        self._conn: Any = None
        self._out = bytearray()
        self._parts: list[Any] = []
        self._size = 0

    def negotiate(self, offers: list[bytes]) -> bytes | None:
        from wsproto.connection import Connection, ConnectionType
        from wsproto.handshake import server_extensions_handshake

        accepted = None
        if offers and self._extensions:
            accepted = server_extensions_handshake(
                [offer.decode("latin-1") for offer in offers], self._extensions
            )
        self._conn = Connection(ConnectionType.SERVER, self._extensions)
        return accepted

    def receive(self, data: bytes) -> list[WsEvent]:
        from wsproto.connection import ConnectionState
        from wsproto.events import (
            BytesMessage,
            CloseConnection,
            Ping,
            TextMessage,
        )
        from wsproto.events import Pong as WsprotoPong

        conn = self._conn
        conn.receive_data(data)
        events: list[WsEvent] = []
        for event in conn.events():
            if isinstance(event, (TextMessage, BytesMessage)):
                self._size += _size(event.data)
                if self._size > self._max_size:
                    self.close(MESSAGE_TOO_BIG, "message too big")
                    events.append(Closed(MESSAGE_TOO_BIG, "message too big"))
                    return events
                self._parts.append(event.data)
                if event.message_finished:
                    parts, self._parts, self._size = self._parts, [], 0
                    events.append(_join(parts))
            elif isinstance(event, Ping):
                if conn.state is ConnectionState.OPEN:
                    self._out += conn.send(event.response())
            elif isinstance(event, WsprotoPong):
                events.append(PONG)
            elif isinstance(event, CloseConnection):
                if conn.state is ConnectionState.REMOTE_CLOSING:
                    self._out += conn.send(event.response())
                else:  # wsproto reports a frame it cannot parse as a close from the client
                    self.close(event.code, event.reason or "")
                events.append(Closed(event.code, event.reason or ""))
                return events
        return events

    def send(self, message: str | bytes) -> None:
        from wsproto.events import BytesMessage, TextMessage

        event = TextMessage(message) if isinstance(message, str) else BytesMessage(message)
        self._out += self._conn.send(event)

    def ping(self, payload: bytes) -> None:
        from wsproto.events import Ping

        self._out += self._conn.send(Ping(payload))

    def close(self, code: int, reason: str = "") -> None:
        from wsproto.connection import ConnectionState
        from wsproto.events import CloseConnection

        if self._conn.state is ConnectionState.OPEN:
            self._out += self._conn.send(CloseConnection(code, reason))

    def output(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out


class WebsocketsEngine:
    """The frame layer of websockets' sans-I/O ServerProtocol, started in the OPEN state."""

    __slots__ = ("_closed", "_parts", "_proto", "_text")

    def __init__(self, max_size: int, deflate: bool) -> None:
        from websockets.extensions.permessage_deflate import enable_server_permessage_deflate
        from websockets.protocol import State
        from websockets.server import ServerProtocol

        self._proto = ServerProtocol(
            extensions=enable_server_permessage_deflate(None) if deflate else None,
            max_size=max_size,
            state=State.OPEN,
            logger=_quiet,
        )
        self._parts: list[bytes] = []
        self._text = False
        self._closed = False

    def negotiate(self, offers: list[bytes]) -> bytes | None:
        from websockets.datastructures import Headers
        from websockets.exceptions import InvalidHandshake

        headers = Headers()
        for offer in offers:
            headers["Sec-WebSocket-Extensions"] = offer.decode("latin-1")
        try:
            accepted, extensions = self._proto.process_extensions(headers)
        except InvalidHandshake as exc:
            raise ProtocolError(400, f"invalid Sec-WebSocket-Extensions: {exc}") from None
        self._proto.extensions = extensions
        return accepted.encode("latin-1") if accepted else None

    def receive(self, data: bytes) -> list[WsEvent]:
        from websockets.frames import Opcode

        proto = self._proto
        proto.receive_data(data)
        events: list[WsEvent] = []
        closed: Closed | None = None
        frame: Any  # only frames once the handshake is done
        for frame in proto.events_received():
            opcode = frame.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY or opcode is Opcode.CONT:
                if opcode is not Opcode.CONT:
                    self._text = opcode is Opcode.TEXT
                if not frame.fin:
                    self._parts.append(bytes(frame.data))
                    continue
                payload = bytes(frame.data)
                if self._parts:
                    payload = b"".join(self._parts) + payload
                    self._parts = []
                if not self._text:
                    events.append(payload)
                    continue
                try:
                    events.append(payload.decode("utf-8"))
                except UnicodeDecodeError:
                    proto.fail(INVALID_DATA, "invalid UTF-8 in a text message")
                    closed = Closed(INVALID_DATA, "invalid UTF-8 in a text message")
                    break
            elif opcode is Opcode.PONG:
                events.append(PONG)
        if closed is None and not self._closed:
            if proto.close_rcvd is not None:  # websockets answered it
                closed = Closed(proto.close_rcvd.code, proto.close_rcvd.reason)
            elif proto.parser_exc is not None and proto.close_sent is not None:
                closed = Closed(proto.close_sent.code, proto.close_sent.reason)
        if closed is not None:
            self._closed = True
            events.append(closed)
        return events

    def send(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self._proto.send_text(message.encode("utf-8"))
        else:
            self._proto.send_binary(message)

    def ping(self, payload: bytes) -> None:
        self._proto.send_ping(payload)

    def close(self, code: int, reason: str = "") -> None:
        from websockets.protocol import State

        if self._proto.state is State.OPEN:
            self._proto.send_close(code, reason)

    def output(self) -> bytes:
        # An empty bytes item asks for a half-close: the session closes the transport itself.
        return b"".join(self._proto.data_to_send())


_quiet = logging.getLogger("asgisup.websockets")
_quiet.propagate = False  # websockets logs every closed connection at INFO


EngineClass = Callable[[int, bool], Engine]  # (max_size, per-message deflate) -> engine


def engine_factory(name: str) -> EngineClass | None:
    """The engine class for ``--ws`` ``name`` (auto: websockets, else wsproto, else None;
    none: None). Raises ImportError when a library asked for by name is not installed."""
    if name == "none":
        return None
    if name == "websockets":
        import websockets.server  # noqa: F401

        return WebsocketsEngine
    if name == "wsproto":
        import wsproto  # noqa: F401

        return WsprotoEngine
    engines: tuple[tuple[str, EngineClass], ...] = (
        ("websockets", WebsocketsEngine),
        ("wsproto", WsprotoEngine),
    )
    for library, engine in engines:
        try:
            __import__(library)
        except ImportError:
            continue
        return engine
    return None
