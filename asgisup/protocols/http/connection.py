"""One HTTP/1.1 connection: bytes from the transport, through a parser, into request cycles.

The connection takes part in admission (DESIGN.md, "Admission semantics") through a
:class:`Gate` the worker provides. It holds a *slot* from the moment it is accepted until its
first response is complete, and again from the moment a later request arrives until that
response is complete. Between requests it is an idle keep-alive connection and holds none.
When a request arrives on an idle connection and the gate has no room, the bytes are kept
unparsed and reading is paused until the gate hands this connection a slot (``admitted``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, cast

from asgisup.protocols.http import framing
from asgisup.protocols.http.cycle import BODY_HIGH_WATER, RequestCycle
from asgisup.protocols.http.events import (
    END_OF_REQUEST,
    UPGRADE,
    Body,
    Event,
    ProtocolError,
    RequestHead,
)
from asgisup.protocols.http.proxy import forwarded
from asgisup.protocols.http.settings import Gate, HttpSettings
from asgisup.protocols.websocket import handshake
from asgisup.protocols.websocket.session import WebSocketSession, WsSettings
from asgisup.types import Scope

logger = logging.getLogger("asgisup.error")

# The transport's write buffer above which send() waits for the client to read.
WRITE_HIGH_WATER = 64 * 1024

_ASGI = {"version": "3.0", "spec_version": "2.4"}


class HttpConnection(asyncio.Protocol):
    __slots__ = (
        "_cycle",
        "_drain_waiters",
        "_events",
        "_idle_timer",
        "_parser",
        "_partial",
        "_peer_trusted",
        "_raw",
        "_reading",
        "_wait_start",
        "_ws",
        "client",
        "closing",
        "gate",
        "has_slot",
        "loop",
        "server",
        "settings",
        "shutting_down",
        "transport",
        "waiting",
        "write_paused",
    )

    def __init__(self, settings: HttpSettings, gate: Gate, loop: asyncio.AbstractEventLoop) -> None:
        self.settings = settings
        self.gate = gate
        self.loop = loop
        self._parser = settings.parser()
        self._events: deque[Event] = deque()
        self._raw = bytearray()  # bytes received while waiting for a slot, not parsed yet
        self._cycle: RequestCycle | None = None
        self._ws: WebSocketSession | None = None  # after a WebSocket handshake request
        self._idle_timer: asyncio.TimerHandle | None = None
        self._wait_start = 0.0  # when the wait for the next request head began
        self._partial = False  # bytes of that request arrived (the client has begun it)
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._reading = True
        self.transport: asyncio.Transport | None = None
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int | None] | None = None
        self._peer_trusted = False  # its forwarding headers are believed (--proxy-headers)
        # The listener admitted this connection before creating it: it holds a slot.
        self.has_slot = True
        self.waiting = False
        self.closing = False
        self.shutting_down = False
        self.write_paused = False

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only look-alikes.
        self.transport = cast(asyncio.Transport, transport)
        if self.client is None:  # else the listener gave what accept() returned
            peer = self.transport.get_extra_info("peername")
            if isinstance(peer, tuple):
                self.client = (str(peer[0]), int(peer[1]))
        if self.server is None:  # else the listener's, when all its connections share it
            local = transport.get_extra_info("sockname")
            if isinstance(local, tuple):
                self.server = (str(local[0]), int(local[1]))
            elif isinstance(local, str):
                self.server = (local, None)
        trusted = self.settings.trusted
        if trusted is not None:
            self._peer_trusted = trusted.trusts(self.client[0] if self.client else None)
        # Bounded memory for a client that does not read: send() waits above this mark.
        self.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        # A connection that never sends a request must not hold a slot for ever.
        self._wait_for_request()
        if self.shutting_down:
            # Told to stop between accept() and now (connect_accepted_socket takes a turn of
            # the loop): idle, so it closes like the others did, not at the idle timeout.
            self.shutdown()

    def data_received(self, data: bytes) -> None:
        if self._ws is not None:
            self._ws.data_received(data)
            return
        self._partial = True
        if self.waiting:
            self._raw += data  # the transport may deliver a little after pause_reading()
            return
        if not self.has_slot:
            if not self.gate.request(self):
                self.waiting = True
                self._raw += data
                self.update_reading()
                return
            self.has_slot = True
        self._parse(data)

    def eof_received(self) -> bool | None:
        return None  # close: a half-closed client gets no response (like uvicorn)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self._cancel_idle_timer()
        if self.waiting:
            self.waiting = False
            self.gate.cancel(self)
        self._release()
        if self._cycle is not None:
            self._cycle.disconnect()
        if self._ws is not None:
            self._ws.connection_lost()
            self.gate.websocket_closed()
        self._wake_drain_waiters()
        self.gate.closed(self)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_drain_waiters()

    # -- called by the gate --------------------------------------------------------------

    def admitted(self) -> None:
        """The gate gave this waiting connection a slot: parse what arrived meanwhile."""
        self.waiting = False
        self.has_slot = True
        if self.closing:
            self._release()
            return
        data = bytes(self._raw)
        self._raw.clear()
        if data:
            self._parse(data)
        else:
            self._pump()

    # -- called by the worker ------------------------------------------------------------

    def shutdown(self) -> None:
        """Graceful stop: close when idle, else after the response in progress."""
        self.shutting_down = True
        if self._ws is not None:
            return  # a WebSocket stays open until the app closes it or the deadline passes
        if self._cycle is None and not self.waiting and not self._events:
            self.close()

    def going_away(self) -> bool:
        """The graceful deadline passed: close an open WebSocket with 1012 (True if one)."""
        return self._ws is not None and self._ws.going_away()

    def abort(self) -> None:
        """The graceful deadline passed: stop the app and drop the connection."""
        if self._cycle is not None and self._cycle.task is not None:
            self._cycle.task.cancel()
        if self._ws is not None and self._ws.task is not None:
            self._ws.task.cancel()
        if self.transport is not None:
            self.transport.abort()

    # -- called by the request cycle -----------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closing:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None and not self.closing:
            self.closing = True
            self.transport.close()

    def default_headers(self) -> bytes:
        return self.settings.default_headers()

    def websocket_established(self) -> None:
        """The app accepted the WebSocket: the request slot goes back to the worker."""
        self._release()

    async def drain(self) -> None:
        """Wait while the client is not reading; give up on one that stalls too long."""
        if not self.write_paused or self.closing:
            return
        waiter = self.loop.create_future()
        self._drain_waiters.append(waiter)
        timer = self.loop.call_later(self.settings.timeout_client_stall, self.stalled)
        try:
            await waiter
        finally:
            timer.cancel()

    def stalled(self) -> None:
        """The client neither sent an awaited body nor read the response in time: drop it."""
        logger.debug(
            "Client %s stalled for %ss; closing", self.client, self.settings.timeout_client_stall
        )
        if self.transport is not None:
            self.transport.abort()

    def body_consumed(self) -> None:
        if not self._reading:
            self.update_reading()

    def response_complete(self, cycle: RequestCycle) -> None:
        """The response went out: free the slot, and go on with a pipelined request."""
        self.gate.responded(cycle.status, self.loop.time() - cycle.started)
        keep_alive = cycle.keep_alive and not self.shutting_down
        if not cycle.request_complete:
            # The app answered without reading the whole body. Drop what is buffered; if the
            # rest has not arrived, the connection cannot be reused (RFC 9112 §9.3).
            while self._events and not isinstance(self._events[0], RequestHead):
                if self._events.popleft() is END_OF_REQUEST:
                    cycle.request_complete = True
            keep_alive = keep_alive and cycle.request_complete
        self._cycle = None
        self._release()
        if not keep_alive:
            self.close()
        elif self._events:
            self._pump()
        else:
            self._wait_for_request()
            if not self._reading:
                self.update_reading()

    # -- internals -----------------------------------------------------------------------

    def _parse(self, data: bytes) -> None:
        try:
            self._events.extend(self._parser.feed(data))
        except ProtocolError as exc:
            self._protocol_error(exc)
            return
        self._pump()

    def _pump(self) -> None:
        """Hand parsed events to the current cycle, or start the next one.

        Events come in order: a head, its body parts, its end, maybe the upgrade marker; the
        markers are the parsers' singletons, so they are told apart by identity."""
        events = self._events
        while events:
            cycle = self._cycle
            if cycle is None:
                if self.closing or self.waiting:
                    break
                if events[0] is UPGRADE:
                    # An upgrade this server does not take: carry on with HTTP/1.1.
                    events.popleft()
                    self._parse(self._parser.take_rest())
                    return
                if not self.has_slot:
                    # A pipelined request: it queues for a slot like any other.
                    if not self.gate.request(self):
                        self.waiting = True
                        break
                    self.has_slot = True
                try:
                    if self._start(cast(RequestHead, events.popleft())):
                        return  # a WebSocket: the session reads what follows
                except ProtocolError as exc:
                    self._protocol_error(exc)
                    return
            elif not cycle.request_complete:
                event = events.popleft()
                if event is END_OF_REQUEST:
                    cycle.end_received()
                else:
                    data = cast(Body, event).data
                    limit = self.settings.max_request_body_size
                    if limit and cycle.body_size + len(data) > limit:
                        self._protocol_error(ProtocolError(413, "request body too large"))
                        return
                    cycle.body_received(data)
            else:
                break  # the next pipelined request waits for this response
        self.update_reading()

    def _start(self, head: RequestHead) -> bool:
        """Start the app for a request: an HTTP request cycle, or a WebSocket session (True).
        Raises ProtocolError for a request the server refuses."""
        settings = self.settings
        keep_alive, expect_continue, upgrade = framing.validate_head(
            head, settings.max_request_headers
        )
        if upgrade and settings.ws is not None and handshake.is_websocket_request(head):
            self._start_websocket(head, settings.ws)
            return True
        if settings.max_request_body_size:
            for name, value in head.headers:
                if name == b"content-length" and int(value) > settings.max_request_body_size:
                    raise ProtocolError(413, "request body larger than --max-request-body-size")
        scope = self._scope(head)
        method = scope["method"] = head.method.decode("ascii")
        path = scope["path"]
        cycle = RequestCycle(self, scope, keep_alive, expect_continue, self.loop.time())
        self._cycle = cycle
        app = _health if path == settings.health_path else settings.app
        cycle.task = self.loop.create_task(cycle.run(app))
        self.gate.started(method, path, cycle.task)
        return False

    def _scope(self, head: RequestHead) -> Scope:
        """What the scopes of both kinds share (the caller adds the rest)."""
        settings = self.settings
        target = head.target
        if target[:1] == b"/":  # origin form, nearly every request: split_target's first case
            raw_path, _, query = target.partition(b"?")
        else:
            raw_path, query = framing.split_target(target)
        if b"%" in raw_path:
            path = framing.decode_path(raw_path)
        else:  # what decode_path gives when there is nothing to unquote
            path = raw_path.decode("ascii", "surrogateescape")
        client: tuple[str, int] | None = self.client
        scheme = settings.scheme
        if self._peer_trusted and settings.trusted is not None:
            client, scheme = forwarded(head.headers, client, scheme, settings.trusted)
        root_path = settings.root_path
        if root_path:
            path = root_path + path
            raw_path = root_path.encode() + raw_path
        return {
            "type": "http",
            "asgi": _ASGI,
            "http_version": head.http_version,
            "server": self.server,
            "client": client,
            "scheme": scheme,
            "root_path": root_path,
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "headers": head.headers,
            "state": settings.state.copy(),
        }

    def _start_websocket(self, head: RequestHead, ws: WsSettings) -> None:
        """Hand the connection to a WebSocket session (the app decides whether to accept)."""
        request = handshake.check(head)
        # The parser stopped after this request; a handshake has no body, so the request's
        # end and the upgrade marker came in the same feed (handshake.check refuses a body).
        while self._events:
            if self._events.popleft() is UPGRADE:
                break
        self._cancel_idle_timer()
        scope = self._scope(head)
        scope["type"] = "websocket"
        scope["scheme"] = "wss" if scope["scheme"] == "https" else "ws"
        scope["subprotocols"] = request.subprotocols
        scope["extensions"] = {"websocket.http.response": {}}
        if not self.gate.websocket_open():
            raise ProtocolError(503, "this worker has --max-websockets open already")
        try:
            session = WebSocketSession(self, scope, request, ws, self._parser.take_rest())
        except ProtocolError:
            self.gate.websocket_closed()
            raise
        self._ws = session
        session.task = self.loop.create_task(session.run(self.settings.app))
        self.gate.started("GET", scope["path"], session.task)

    def _protocol_error(self, exc: ProtocolError) -> None:
        logger.debug("Invalid HTTP request from %s: %s", self.client, exc.reason)
        cycle = self._cycle
        if cycle is None or not cycle.response_started:
            self.write(
                framing.simple_response(
                    exc.status, default_headers=self.default_headers() + exc.headers
                )
            )
            self.gate.responded(exc.status, 0.0)
        if cycle is not None:
            cycle.disconnect()  # the request body can never be completed
        self.close()

    def _release(self) -> None:
        if self.has_slot:
            self.has_slot = False
            self.gate.release()

    def update_reading(self) -> None:
        """Read from the socket only when it helps: not while waiting for a slot, not while
        the app leaves a body unread, not while a pipelined request waits its turn."""
        if self._ws is not None:
            want = not self.closing and self._ws.wants_data()
        else:
            cycle = self._cycle
            want = not (
                self.closing
                or self.waiting
                or (
                    cycle is not None
                    and (
                        cycle.buffered > BODY_HIGH_WATER
                        or (cycle.request_complete and self._events)
                    )
                )
            )
        if want != self._reading and self.transport is not None and not self.closing:
            self._reading = want
            if want:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    def _wait_for_request(self) -> None:
        """Wait for the next request: closed when idle for --timeout-keep-alive, or with 408
        once a begun head is still incomplete after --timeout-request-head.

        One timer serves many requests: it is not cancelled when a request arrives, and when
        it fires it looks at the connection as it is then (``_idle``). Re-arming a timer for
        every request cost more than the request's own admission bookkeeping."""
        self._wait_start = self.loop.time()
        self._partial = False
        if self._idle_timer is None:
            settings = self.settings
            first = min(settings.timeout_keep_alive, settings.timeout_request_head)
            self._idle_timer = self.loop.call_later(first, self._idle)

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _idle(self) -> None:
        self._idle_timer = None
        if self._cycle is not None or self.waiting or self._events:
            return  # busy: the end of its response sets the timer again
        settings = self.settings
        limit = settings.timeout_request_head if self._partial else settings.timeout_keep_alive
        left = self._wait_start + limit - self.loop.time()
        if left > 0:
            self._idle_timer = self.loop.call_later(left, self._idle)
        elif self._partial:
            logger.debug("Client %s sent an incomplete request head for %ss", self.client, limit)
            self._protocol_error(ProtocolError(408, "request head not received in time"))
        else:
            self.close()

    def _wake_drain_waiters(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


async def _health(scope: Any, receive: Any, send: Any) -> None:
    """The --health-path on the server's own port: reaching a worker means it can take work."""
    headers = [(b"content-type", b"text/plain"), (b"cache-control", b"no-store")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok\n"})
