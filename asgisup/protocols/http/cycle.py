"""One HTTP request/response cycle as the ASGI app sees it: ``receive`` and ``send``.

Written once for both parsers. The connection feeds request body in (``body_received``,
``end_received``, ``disconnected``) and this object writes the response out through the
connection, framed by :mod:`framing`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING
from urllib.parse import quote

from asgisup.protocols.http import framing
from asgisup.protocols.http.framing import BodyMode, ResponseHeadError
from asgisup.types import ASGIApp, Message, Scope

if TYPE_CHECKING:
    from asgisup.protocols.http.connection import HttpConnection

logger = logging.getLogger("asgisup.error")
access_logger = logging.getLogger("asgisup.access")

# Body bytes held for an app that does not read them yet; above this the socket is not read.
BODY_HIGH_WATER = 64 * 1024

# The body modes as plain names: send() tests them for every message.
_NONE, _LENGTH, _CHUNKED = BodyMode.NONE, BodyMode.LENGTH, BodyMode.CHUNKED


class ClientDisconnected(OSError):
    """Raised by ``send()`` once the client has gone (ASGI HTTP spec 2.4)."""


class RequestCycle:
    __slots__ = (
        "_body",
        "_body_done",
        "_conn",
        "_head_request",
        "_mode",
        "_remaining",
        "_start",
        "_waiter",
        "body_size",
        "buffered",
        "disconnected",
        "expect_continue",
        "http_version",
        "keep_alive",
        "request_complete",
        "response_complete",
        "response_started",
        "scope",
        "started",
        "status",
        "task",
    )

    def __init__(
        self,
        conn: HttpConnection,
        scope: Scope,
        keep_alive: bool,
        expect_continue: bool,
        started: float,
    ) -> None:
        self._conn = conn
        self.started = started
        self.scope = scope
        self.http_version: str = scope["http_version"]
        self._head_request = scope["method"] == "HEAD"
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self._body: list[bytes] = []
        self.buffered = 0
        self.body_size = 0  # request body bytes received so far
        self._body_done = False  # the last http.request message was handed to the app
        self.request_complete = False
        self.disconnected = False
        self.response_started = False
        self.response_complete = False
        self._start: tuple[int, list[tuple[bytes, bytes]]] | None = None
        self._mode = BodyMode.NONE
        self._remaining = 0
        self.status = 0
        self._waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None

    # -- fed by the connection -----------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def body_received(self, data: bytes) -> None:
        if data:
            self._body.append(data)
            self.buffered += len(data)
            self.body_size += len(data)
            self._wake()

    def end_received(self) -> None:
        self.request_complete = True
        self._wake()

    def disconnect(self) -> None:
        self.disconnected = True
        self._wake()

    # -- the ASGI side -------------------------------------------------------------------

    async def receive(self) -> Message:
        if self.expect_continue:
            # RFC 9110 §10.1.1: the client waits for 100 Continue; send it only now that the
            # app asks for the body, so an app that answers without reading it saves a round trip.
            self.expect_continue = False
            if not (self.request_complete or self.disconnected or self.response_started):
                self._conn.write(framing.CONTINUE)
        while True:
            if self.disconnected or self.response_complete:
                return {"type": "http.disconnect"}
            if self._body or (self.request_complete and not self._body_done):
                body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
                self._body.clear()
                self.buffered = 0
                self._body_done = self.request_complete
                self._conn.body_consumed()
                return {"type": "http.request", "body": body, "more_body": not self._body_done}
            loop = self._conn.loop
            self._waiter = loop.create_future()
            timer = loop.call_later(self._conn.settings.timeout_client_stall, self._conn.stalled)
            try:
                await self._waiter
            finally:
                timer.cancel()
                self._waiter = None

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if self.disconnected:
            raise ClientDisconnected("the client closed the connection")
        if not self.response_started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected 'http.response.start', got {kind!r}")
            status = message["status"]
            if type(status) is not int:
                raise RuntimeError(f"response status must be an int, got {status!r}")
            # Serialized with the first body message; response_head() checks every field.
            self._start = (status, list(message.get("headers", ())))
            self.response_started = True
            self.status = status
            return
        if self.response_complete:
            raise RuntimeError(f"unexpected {kind!r}: the response was already complete")
        if kind != "http.response.body":
            raise RuntimeError(f"expected 'http.response.body', got {kind!r}")
        body = message.get("body", b"")
        more_body = message.get("more_body", False)
        out = self._head(None if more_body else len(body)) if self._start else b""
        mode = self._mode
        if body and mode is not _NONE:
            if mode is _CHUNKED:
                out += framing.chunk(body)
            else:
                if mode is _LENGTH:
                    if len(body) > self._remaining:
                        self.keep_alive = False
                        raise RuntimeError("response body longer than its content-length")
                    self._remaining -= len(body)
                out += body
        conn = self._conn
        if more_body:
            conn.write(out)
            if conn.write_paused:
                await conn.drain()
            return
        if mode is _CHUNKED:
            out += framing.LAST_CHUNK
        elif mode is _LENGTH and self._remaining:
            self.keep_alive = False
            conn.write(out)
            raise RuntimeError("response body shorter than its content-length")
        conn.write(out)
        self.response_complete = True
        if self._waiter is not None:
            self._wake()
        if conn.settings.access_log:
            self._access_log()
        conn.response_complete(self)

    def _head(self, body_length: int | None) -> bytes:
        assert self._start is not None
        status, headers = self._start
        self._start = None
        conn = self._conn
        keep_alive = self.keep_alive and not conn.closing
        if keep_alive and conn.gate.busy_close(self.started):
            keep_alive = False
        try:
            head, self._mode, self._remaining, self.keep_alive = framing.response_head(
                status,
                headers,
                head_request=self._head_request,
                http_version=self.http_version,
                keep_alive=keep_alive,
                body_length=body_length,
                default_headers=conn.settings.default_headers(),
            )
        except ResponseHeadError as exc:
            # Nothing was written yet: the app's bug becomes a 500, not a broken response.
            self._start = (status, headers)
            self.response_started = False
            raise RuntimeError(str(exc)) from None
        return head

    # -- running the app -----------------------------------------------------------------

    async def run(self, app: ASGIApp) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            self._app_failed(exc)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            # CancelledError ends here: only a forced shutdown cancels a cycle.
        else:
            if not self.response_started and not self.disconnected:
                logger.error("ASGI app returned without starting a response.")
                self.send_500()
            elif not self.response_complete and not self.disconnected:
                logger.error("ASGI app returned without completing the response.")
                self._conn.close()

    def _app_failed(self, exc: BaseException) -> None:
        if self.disconnected or isinstance(exc, asyncio.CancelledError):
            # The client left (the app tripped over it) or the server is stopping: not news.
            logger.debug("ASGI app ended by %r after the client left", exc)
            self._conn.close()
            return
        logger.error("Exception in ASGI application", exc_info=exc)
        if self.response_complete:
            return
        if self._start is not None or not self.response_started:
            self.send_500()  # no byte of the response is on the wire yet
        else:
            self._conn.close()  # a partial response: the client sees it cut off

    def send_500(self) -> None:
        self.status = 500
        self.response_started = self.response_complete = True
        self.keep_alive = False
        self._wake()
        self._conn.write(framing.simple_response(500, default_headers=self._conn.default_headers()))
        self._access_log()
        self._conn.response_complete(self)

    def _access_log(self) -> None:
        log_access(self._conn, self.scope, self.status, self.started)


def log_access(conn: HttpConnection, scope: Scope, status: int, started: float) -> None:
    """One access log line for a response (or a WebSocket handshake) with ``status``."""
    if not conn.settings.access_log:
        return
    client = scope.get("client")
    path = quote(scope["path"], safe="/:@!$&'()*+,;=-._~%")
    if scope["query_string"]:
        path += "?" + scope["query_string"].decode("ascii", "replace")
    fields = {
        "client": f"{client[0]}:{client[1]}" if client else "-",
        "method": scope.get("method", "GET"),
        "path": path,
        "http_version": scope["http_version"],
        "status": status,
        "reason": framing.reason(status),
        "duration_ms": round((conn.loop.time() - started) * 1000, 3),
    }
    message = conn.settings.access_log_format.format_map(fields)
    access_logger.info(message, extra={"access": fields})
