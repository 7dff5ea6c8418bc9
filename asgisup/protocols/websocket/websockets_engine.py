"""The websockets engine: the frame layer of websockets' sans-I/O ServerProtocol, started in
the OPEN state (the handshake is ours)."""

from __future__ import annotations

import logging
from typing import Any

from websockets.datastructures import Headers
from websockets.exceptions import InvalidHandshake
from websockets.extensions.permessage_deflate import enable_server_permessage_deflate
from websockets.frames import Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from asgisup.protocols.http.events import ProtocolError
from asgisup.protocols.websocket.engines import INVALID_DATA, PONG, Closed, WsEvent

_quiet = logging.getLogger("asgisup.websockets")
_quiet.propagate = False  # websockets logs every closed connection at INFO

_TEXT, _BINARY, _CONT, _PONG = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.PONG


class WebsocketsEngine:
    __slots__ = ("_closed", "_partial", "_proto", "_text")

    def __init__(self, max_size: int, deflate: bool) -> None:
        self._proto = ServerProtocol(
            extensions=enable_server_permessage_deflate(None) if deflate else None,
            max_size=max_size,
            state=State.OPEN,
            logger=_quiet,
        )
        self._partial = bytearray()  # a fragmented message so far (at most max_size)
        self._text = False
        self._closed = False

    def negotiate(self, offers: list[bytes]) -> bytes | None:
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
        proto = self._proto
        proto.receive_data(data)
        events: list[WsEvent] = []
        closed: Closed | None = None
        frame: Any  # only frames once the handshake is done
        for frame in proto.events_received():
            opcode = frame.opcode
            if opcode is _TEXT or opcode is _BINARY or opcode is _CONT:
                if opcode is not _CONT:
                    self._text = opcode is _TEXT
                if not frame.fin:
                    self._partial += frame.data
                    continue
                if self._partial:
                    self._partial += frame.data
                    payload = bytes(self._partial)
                    self._partial.clear()
                else:
                    payload = bytes(frame.data)
                if not self._text:
                    events.append(payload)
                    continue
                try:
                    events.append(payload.decode("utf-8"))
                except UnicodeDecodeError:
                    proto.fail(INVALID_DATA, "invalid UTF-8 in a text message")
                    closed = Closed(INVALID_DATA, "invalid UTF-8 in a text message")
                    break
            elif opcode is _PONG:
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
        if self._proto.state is State.OPEN:
            self._proto.send_close(code, reason)

    def output(self) -> bytes:
        # An empty bytes item asks for a half-close: the session closes the transport itself.
        return b"".join(self._proto.data_to_send())
