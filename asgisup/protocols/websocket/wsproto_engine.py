"""The wsproto engine: wsproto's frame layer (its Connection), past the handshake."""

from __future__ import annotations

from typing import Any

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.extensions import PerMessageDeflate
from wsproto.handshake import server_extensions_handshake

from asgisup.protocols.websocket.engines import MESSAGE_TOO_BIG, PONG, Closed, WsEvent


def _size(part: str | bytes | bytearray) -> int:
    if not isinstance(part, str) or part.isascii():
        return len(part)
    return len(part.encode("utf-8"))


class WsprotoEngine:
    __slots__ = ("_conn", "_extensions", "_max_size", "_out", "_partial", "_text")

    def __init__(self, max_size: int, deflate: bool) -> None:
        self._max_size = max_size
        self._extensions: list[Any] = [PerMessageDeflate()] if deflate else []
        self._conn: Any = None
        self._out = bytearray()
        # A fragmented message so far, as bytes (text re-encoded): memory stays within
        # max_size however many fragments it comes in.
        self._partial = bytearray()
        self._text = False

    def negotiate(self, offers: list[bytes]) -> bytes | None:
        accepted = None
        if offers and self._extensions:
            accepted = server_extensions_handshake(
                [offer.decode("latin-1") for offer in offers], self._extensions
            )
        self._conn = Connection(ConnectionType.SERVER, self._extensions)
        return accepted

    def receive(self, data: bytes) -> list[WsEvent]:
        conn = self._conn
        conn.receive_data(data)
        events: list[WsEvent] = []
        for event in conn.events():
            if isinstance(event, (TextMessage, BytesMessage)):
                part: str | bytes | bytearray = event.data
                whole = event.message_finished and not self._partial
                size = _size(part) if whole else len(self._partial) + _size(part)
                if size > self._max_size:
                    self.close(MESSAGE_TOO_BIG, "message too big")
                    events.append(Closed(MESSAGE_TOO_BIG, "message too big"))
                    return events
                if whole:  # the common case: one frame, nothing to assemble
                    events.append(part if isinstance(part, str) else bytes(part))
                    continue
                self._text = isinstance(part, str)
                self._partial += part.encode("utf-8") if isinstance(part, str) else part
                if event.message_finished:
                    message = bytes(self._partial)
                    self._partial.clear()
                    events.append(message.decode("utf-8") if self._text else message)
            elif isinstance(event, Ping):
                if conn.state is ConnectionState.OPEN:
                    self._out += conn.send(event.response())
            elif isinstance(event, Pong):
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
        event = TextMessage(message) if isinstance(message, str) else BytesMessage(message)
        self._out += self._conn.send(event)

    def ping(self, payload: bytes) -> None:
        self._out += self._conn.send(Ping(payload))

    def close(self, code: int, reason: str = "") -> None:
        if self._conn.state is ConnectionState.OPEN:
            self._out += self._conn.send(CloseConnection(code, reason))

    def output(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out
