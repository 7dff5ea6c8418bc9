"""One WebSocket as the ASGI app sees it: the handshake, then messages both ways, then close.

The HTTP connection judged the handshake request and hands its transport over; from then on
every byte the client sends comes here. Admission (docs/websockets.md): until the app accepts,
the handshake is a request like any other and holds the connection's request slot; once the
``101`` is written the slot is given back and the WebSocket counts only against
``--max-websockets``. A denial (``websocket.close`` before accepting, or the
``websocket.http.response`` extension) is an HTTP response, sent by a :class:`RequestCycle`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from asgisup.protocols.http.cycle import ClientDisconnected, RequestCycle, log_access
from asgisup.protocols.http.framing import ResponseHeadError
from asgisup.protocols.websocket.engines import PONG, Closed, Engine, EngineClass
from asgisup.protocols.websocket.handshake import Handshake, accept_response
from asgisup.types import ASGIApp, Message, Scope

if TYPE_CHECKING:
    from asgisup.protocols.http.connection import HttpConnection

logger = logging.getLogger("asgisup.error")

# Close codes (RFC 6455 §7.4.1) the server sends or reports on its own.
NORMAL = 1000
ABNORMAL = 1006  # reported to the app only: the connection ended without a closing handshake
INTERNAL_ERROR = 1011
SERVICE_RESTART = 1012

# After the server sent a close frame, how long the client has to answer it.
CLOSE_TIMEOUT = 5.0
# Bytes a client may send after its handshake, before the app accepts, without being paused.
EARLY_DATA_LIMIT = 64 * 1024


@dataclass(slots=True)
class WsSettings:
    """What every WebSocket of a worker shares (built once, from --ws-* options)."""

    engine: EngineClass
    max_size: int = 16 * 1024 * 1024
    max_queue: int = 32
    ping_interval: float = 20.0  # 0: no pings
    ping_timeout: float = 20.0  # 0: pings are not awaited
    per_message_deflate: bool = True

    def new_engine(self) -> Engine:
        return self.engine(self.max_size, self.per_message_deflate)


class State(enum.Enum):
    CONNECTING = "connecting"  # the app has not answered the handshake yet
    DENIED = "denied"  # the app answers with an HTTP response
    OPEN = "open"
    CLOSING = "closing"  # the server sent a close frame and waits for the client's
    CLOSED = "closed"  # no more frames either way


class WebSocketSession:
    __slots__ = (
        "_app_closed",
        "_close_timer",
        "_conn",
        "_connect_sent",
        "_cycle",
        "_disconnect",
        "_early",
        "_engine",
        "_extensions",
        "_handshake",
        "_incoming",
        "_ping_timer",
        "_pong_deadline",
        "_settings",
        "_waiter",
        "scope",
        "started",
        "state",
        "task",
    )

    def __init__(
        self,
        conn: HttpConnection,
        scope: Scope,
        handshake: Handshake,
        settings: WsSettings,
        early: bytes,
    ) -> None:
        """Raises ProtocolError (400) when the client's extension offer is malformed."""
        self._conn = conn
        self.scope = scope
        self._handshake = handshake
        self._settings = settings
        self._engine = settings.new_engine()
        self._extensions = self._engine.negotiate(handshake.extensions)
        self._early = bytearray(early)  # frames sent before the app accepted
        self._incoming: deque[Message] = deque()
        self._disconnect: Message | None = None  # once queued, every later receive() gets it
        self._waiter: asyncio.Future[None] | None = None
        self._cycle: RequestCycle | None = None
        self._connect_sent = False
        self._app_closed = False
        self._ping_timer: asyncio.TimerHandle | None = None
        self._pong_deadline: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self.state = State.CONNECTING
        self.started = conn.loop.time()
        self.task: asyncio.Task[None] | None = None

    # -- fed by the connection -----------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.state is State.CONNECTING:
            self._early += data
            self._conn.update_reading()
            return
        if self.state is State.OPEN or self.state is State.CLOSING:
            self._feed(data)
        # DENIED or CLOSED: what the client sends now is ignored.

    def wants_data(self) -> bool:
        """Whether the connection should read from the socket now."""
        if self.state is State.CONNECTING:
            return len(self._early) < EARLY_DATA_LIMIT
        return len(self._incoming) < self._settings.max_queue

    def connection_lost(self) -> None:
        self._cancel_timers()
        if self._cycle is not None:
            self._cycle.disconnect()
        if self.state is not State.CLOSED:
            self.state = State.CLOSED
            self._disconnected(ABNORMAL, "")

    def going_away(self) -> bool:
        """The worker stops: close an open WebSocket with 1012. True if it was open."""
        if self.state is not State.OPEN:
            return False
        self._engine.close(SERVICE_RESTART, "service restart")
        self._end(SERVICE_RESTART, "service restart")
        return True

    # -- the ASGI side -------------------------------------------------------------------

    async def run(self, app: ASGIApp) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            self._app_failed(exc)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
        else:
            self._app_returned()

    async def receive(self) -> Message:
        if not self._connect_sent:
            self._connect_sent = True
            return {"type": "websocket.connect"}
        while not self._incoming:
            if self._disconnect is not None:
                return self._disconnect
            self._waiter = self._conn.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        message = self._incoming.popleft()
        if len(self._incoming) == self._settings.max_queue - 1:
            self._conn.update_reading()
        return message

    async def send(self, message: Message) -> None:
        kind = message["type"]
        state = self.state
        if state is State.CONNECTING:
            if kind == "websocket.accept":
                self._accept(message)
            elif kind == "websocket.close":
                # Closed before accepting: the handshake is refused with 403 (ASGI spec).
                cycle = self._deny()
                await cycle.send({"type": "http.response.start", "status": 403, "headers": []})
                await cycle.send({"type": "http.response.body", "body": b""})
            elif kind == "websocket.http.response.start":
                await self._deny().send({**message, "type": "http.response.start"})
            else:
                raise RuntimeError(
                    f"expected 'websocket.accept' or 'websocket.close', got {kind!r}"
                )
        elif state is State.DENIED:
            assert self._cycle is not None
            if kind != "websocket.http.response.body":
                raise RuntimeError(f"expected 'websocket.http.response.body', got {kind!r}")
            await self._cycle.send({**message, "type": "http.response.body"})
        elif self._app_closed:
            raise RuntimeError(f"unexpected {kind!r} after 'websocket.close'")
        elif state is not State.OPEN:
            raise ClientDisconnected("the WebSocket is closed")
        elif kind == "websocket.send":
            data = message.get("bytes")
            if data is None:
                data = message.get("text")
                if data is None:
                    raise RuntimeError("'websocket.send' needs 'bytes' or 'text'")
            self._engine.send(data)
            self._flush()
            if self._conn.write_paused:
                await self._conn.drain()
        elif kind == "websocket.close":
            self._app_closed = True
            self._close(message.get("code") or NORMAL, message.get("reason") or "")
        else:
            raise RuntimeError(f"expected 'websocket.send' or 'websocket.close', got {kind!r}")

    # -- internals -----------------------------------------------------------------------

    def _accept(self, message: Message) -> None:
        conn = self._conn
        subprotocol = message.get("subprotocol")
        try:
            response = accept_response(
                self._handshake,
                subprotocol=subprotocol,
                extensions=self._extensions,
                headers=[(bytes(n), bytes(v)) for n, v in message.get("headers", ())],
                default_headers=conn.default_headers(),
            )
        except (ResponseHeadError, UnicodeEncodeError) as exc:
            raise RuntimeError(f"invalid 'websocket.accept': {exc}") from None
        conn.write(response)
        self.state = State.OPEN
        conn.gate.responded(101, conn.loop.time() - self.started)
        log_access(conn, self.scope, 101, self.started)
        conn.websocket_established()  # the request slot goes back to the worker
        self._schedule_ping()
        if self._early:
            early = bytes(self._early)
            self._early.clear()
            self._feed(early)
        conn.update_reading()

    def _deny(self) -> RequestCycle:
        """The HTTP response that refuses the handshake; the connection closes after it."""
        self.state = State.DENIED
        scope = {**self.scope, "type": "http", "method": "GET"}
        self._cycle = RequestCycle(
            self._conn, scope, keep_alive=False, expect_continue=False, started=self.started
        )
        self._disconnected(ABNORMAL, "")  # the app reads no more from this connection
        return self._cycle

    def _feed(self, data: bytes) -> None:
        try:
            events = self._engine.receive(data)
        except Exception as exc:  # a library that breaks on input must not take the worker
            logger.debug("WebSocket engine failed on client data: %r", exc)
            self._flush()
            self._conn.abort()
            return
        incoming = self._incoming
        for event in events:
            if type(event) is str:
                incoming.append({"type": "websocket.receive", "text": event})
            elif type(event) is bytes:
                incoming.append({"type": "websocket.receive", "bytes": event})
            elif event is PONG:
                if self._pong_deadline is not None:
                    self._pong_deadline.cancel()
                    self._pong_deadline = None
            elif isinstance(event, Closed):
                self._end(event.code, event.reason)
                return
        self._flush()
        if incoming:
            self._wake()
            if len(incoming) >= self._settings.max_queue:
                self._conn.update_reading()

    def _flush(self) -> None:
        out = self._engine.output()
        if out:
            self._conn.write(out)

    def _end(self, code: int, reason: str) -> None:
        """The WebSocket is over: write the close frame owed (in the engine's output), tell
        the app, and close the connection once that is written."""
        self._flush()
        self.state = State.CLOSED
        self._cancel_timers()
        self._disconnected(code, reason)
        self._conn.close()

    def _close(self, code: int, reason: str) -> None:
        """The server starts the closing handshake; the client has CLOSE_TIMEOUT to answer."""
        self._engine.close(code, reason)
        self._flush()
        self.state = State.CLOSING
        self._cancel_timers()
        self._close_timer = self._conn.loop.call_later(CLOSE_TIMEOUT, self._conn.abort)

    def _disconnected(self, code: int, reason: str) -> None:
        if self._disconnect is None:
            self._disconnect = {"type": "websocket.disconnect", "code": code, "reason": reason}
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # keepalive: a ping every ping_interval; no pong within ping_timeout ends the connection
    def _schedule_ping(self) -> None:
        interval = self._settings.ping_interval
        if interval > 0:
            self._ping_timer = self._conn.loop.call_later(interval, self._ping)

    def _ping(self) -> None:
        self._ping_timer = None
        if self.state is not State.OPEN:
            return
        if self._pong_deadline is None:
            self._engine.ping(b"asgisup")
            self._flush()
            if self._settings.ping_timeout > 0:
                self._pong_deadline = self._conn.loop.call_later(
                    self._settings.ping_timeout, self._ping_timed_out
                )
        self._schedule_ping()

    def _ping_timed_out(self) -> None:
        self._pong_deadline = None
        logger.debug("WebSocket client %s did not answer a ping; closing", self._conn.client)
        self._engine.close(INTERNAL_ERROR, "keepalive ping timeout")
        self._end(INTERNAL_ERROR, "keepalive ping timeout")
        # A client that answers nothing may not read either: do not wait for the flush.
        self._close_timer = self._conn.loop.call_later(CLOSE_TIMEOUT, self._conn.abort)

    def _cancel_timers(self) -> None:
        for timer in (self._ping_timer, self._pong_deadline, self._close_timer):
            if timer is not None:
                timer.cancel()
        self._ping_timer = self._pong_deadline = self._close_timer = None

    # how the app ended
    def _app_failed(self, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError) or self.state is State.CLOSED:
            logger.debug("WebSocket app ended by %r", exc)
            self._conn.close()
            return
        logger.error("Exception in ASGI application", exc_info=exc)
        if self.state is State.CONNECTING:
            self._deny().send_500()
        elif self.state is State.DENIED:
            assert self._cycle is not None
            if not self._cycle.response_started:
                self._cycle.send_500()
            else:
                self._conn.close()
        elif self.state is State.OPEN:
            self._close(INTERNAL_ERROR, "")

    def _app_returned(self) -> None:
        state = self.state
        if state is State.CONNECTING:
            logger.error("ASGI app returned without accepting or closing the WebSocket.")
            self._deny().send_500()
        elif state is State.DENIED:
            assert self._cycle is not None
            if not self._cycle.response_complete:
                logger.error("ASGI app returned without completing the response.")
                self._conn.close()
        elif state is State.OPEN:
            self._close(NORMAL, "")
