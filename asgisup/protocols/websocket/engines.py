"""Two WebSocket frame engines behind one small interface: wsproto and websockets.

Both libraries are sans-I/O: bytes in, events out, bytes to write. An engine turns them into
the three things a session needs (a whole message, a pong, the end of the connection) and
enforces the same rules for both: messages are assembled from their fragments and held to
``max_size`` (close 1009), invalid frames or text end the connection with the library's code
(1002, 1007), pings are answered, and a close from the client is answered with a close.

Per-message deflate (RFC 7692) is each library's own implementation; the session does not
see it. websockets bounds the size of a message while it inflates it; wsproto inflates a frame
whole and the size is checked after each fragment (docs/websockets.md).

Each engine lives in its own module, imported only when ``--ws`` chooses it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

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


EngineClass = Callable[[int, bool], Engine]  # (max_size, per-message deflate) -> engine


def engine_factory(name: str) -> EngineClass | None:
    """The engine class for ``--ws`` ``name`` (auto: websockets, else wsproto, else None;
    none: None). Raises ImportError when a library asked for by name is not installed."""
    if name == "none":
        return None
    if name == "websockets":
        from asgisup.protocols.websocket.websockets_engine import WebsocketsEngine

        return WebsocketsEngine
    if name == "wsproto":
        from asgisup.protocols.websocket.wsproto_engine import WsprotoEngine

        return WsprotoEngine
    for library in ("websockets", "wsproto"):
        try:
            return engine_factory(library)
        except ImportError:
            continue
    return None
