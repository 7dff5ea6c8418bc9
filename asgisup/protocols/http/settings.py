"""What a connection gets from its worker: the settings all of the worker's connections
share, and the :class:`Gate` through which they take part in admission."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from asgisup.logs import ACCESS_FORMAT
from asgisup.protocols.http import framing
from asgisup.protocols.http.parsers import Parser
from asgisup.protocols.http.proxy import TrustedProxies
from asgisup.protocols.websocket.session import WsSettings
from asgisup.types import ASGIApp

if TYPE_CHECKING:
    from asgisup.protocols.http.connection import HttpConnection


class Gate(Protocol):
    """The worker's side of admission, as a connection sees it."""

    def request(self, conn: HttpConnection) -> bool:
        """A request arrived on a connection without a slot: True if admitted now, else the
        gate calls ``conn.admitted()`` later."""
        ...

    def release(self) -> None:
        """The connection gives its slot back."""
        ...

    def cancel(self, conn: HttpConnection) -> None:
        """A waiting connection closed before it was admitted."""
        ...

    def closed(self, conn: HttpConnection) -> None:
        """The connection is gone for good."""
        ...

    def started(self, method: str, path: str, task: asyncio.Task[None]) -> None:
        """The app was called for a request (or a WebSocket) and runs in ``task``: a graceful
        stop waits for it, even after its connection has closed."""
        ...

    def responded(self, status: int, seconds: float) -> None:
        """A response with ``status`` was sent, ``seconds`` after its request began."""
        ...

    def busy_close(self, started: float) -> bool:
        """Whether a response to a request that started at loop time ``started`` should close
        its connection rather than keep it alive, to return the client to the shared queue."""
        ...

    def websocket_open(self) -> bool:
        """A WebSocket handshake starts: False if the worker has --max-websockets already."""
        ...

    def websocket_closed(self) -> None:
        """A connection that began a WebSocket handshake is gone."""
        ...


@dataclass(slots=True)
class HttpSettings:
    """What every connection of a worker shares; built once per worker."""

    app: ASGIApp
    parser: Callable[[], Parser]
    root_path: str = ""
    timeout_keep_alive: float = 5.0
    timeout_request_head: float = 10.0
    timeout_client_stall: float = 60.0
    max_request_headers: int = 100
    max_request_body_size: int = 0  # 0: no limit
    health_path: str | None = None  # answered 200 without calling the app
    access_log: bool = True
    access_log_format: str = ACCESS_FORMAT
    server_header: bool = True
    date_header: bool = True
    extra_headers: bytes = b""
    trusted: TrustedProxies | None = None
    state: dict[str, Any] = field(default_factory=dict)
    scheme: str = "http"
    ws: WsSettings | None = None  # None: WebSocket handshakes reach the app as plain HTTP
    _second: int = field(default=-1, init=False, repr=False)  # when _defaults was built
    _defaults: bytes = field(default=b"", init=False, repr=False)

    def default_headers(self) -> bytes:
        """The header lines of every response: server, date, --header ones (RFC 9110 §6.6.1:
        the date changes once a second, so the lines are built at most once a second)."""
        now = int(time.time())
        if now != self._second:
            self._second = now
            server = b"server: asgisup\r\n" if self.server_header else b""
            date = framing.date_line(now) if self.date_header else b""
            self._defaults = server + date + self.extra_headers
        return self._defaults
