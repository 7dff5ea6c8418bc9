"""The worker's accept loop on the shared listening socket, governed by its admission ceiling.

Why not ``loop.create_server(sock=...)``: it re-calls ``listen()`` on the shared socket (which
changes the backlog for every process) and accepts up to ``backlog`` connections per wake-up
whatever this worker's load (DESIGN.md, "Facts of the platform"). Here the listening fd is
polled only while :attr:`Admission.accepting` holds, and that is re-checked before every
single ``accept()``; a full worker removes the fd from its loop, so the kernel keeps the
connection in the shared accept queue for a sibling. How many a wake-up takes: ``_share``;
whether it leaves them all to a sibling that holds far fewer connections: ``_should_yield``.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import socket
import ssl
import time
from collections.abc import Coroutine
from typing import Any

from asgisup.admission import Admission, ServiceTime, busy_close
from asgisup.protocols.http.connection import HttpConnection
from asgisup.protocols.http.settings import HttpSettings
from asgisup.scoreboard import SlotWriter
from asgisup.sockinfo import accept_queue, shared_local_address

logger = logging.getLogger("asgisup.error")

# The most connections one wake-up accepts (the ceiling, when there is one, comes first).
ACCEPT_BATCH = 64
# Requests that take at least this long on average (seconds): the worker accepts one
# connection per wake-up, so what waits goes to whichever worker frees first.
SLOW_SERVICE = 0.001
# Out of fds or buffers: stop accepting this long, then try again (like trio's serve_listeners).
RESOURCE_BACKOFF = 0.1
# The balance of connections between workers (docs/admission.md): a worker woken while it
# holds more than BALANCE_FACTOR times the open connections of the sibling with the fewest
# that accepts, plus BALANCE_SLACK, stops polling for BALANCE_PAUSE seconds, or until it is
# down to BALANCE_SLACK connections. Woken again with that sibling no fuller, it accepts:
# the sibling's loop is busy or blocked (it still reads as accepting). Once that sibling let
# BALANCE_STALLED pauses in a row pass, a worker with nothing in flight pauses for it no
# more until its count moves, or for BALANCE_RETRY seconds (a sibling that runs again takes
# nothing while this one takes all at once, so its count would never move).
BALANCE_FACTOR = 2
BALANCE_SLACK = 2
BALANCE_PAUSE = 0.002
BALANCE_STALLED = 2
BALANCE_RETRY = 0.1
_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class Listener:
    """Accepts while the admission controller allows; the :class:`Gate` of its connections."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        admission: Admission[HttpConnection],
        settings: HttpSettings,
        *,
        busy_close_min_service: float | None = None,
        slot: SlotWriter | None = None,
        ssl: ssl.SSLContext | None = None,
        max_websockets: int = 0,
        workers: int = 1,
    ) -> None:
        """``busy_close_min_service`` None turns the keep-alive policy off; ``slot`` is the
        worker's scoreboard slot, told of every request; ``max_websockets`` 0 is no limit;
        ``workers`` is how many workers share the socket (for the share each one accepts)."""
        self.loop = loop
        self.sock = sock
        self.admission = admission
        self.settings = settings
        self.connections: set[HttpConnection] = set()
        self.app_tasks: set[asyncio.Task[None]] = set()  # see started()
        self.accepted = 0
        self.slot = slot
        self.ssl = ssl
        self.max_websockets = max_websockets
        self.workers = workers
        self.websockets = 0  # connections past a WebSocket handshake request, open
        self._full_since: float | None = None
        self._full_total = 0.0
        self._fd = sock.fileno()
        # Given to every connection with the peer accept() returned, so connection_made need
        # not ask the transport for either (0.95 -> 0.12 µs per connection, timeit).
        self._local = shared_local_address(sock)
        # For building accepted sockets without socket.accept()'s enum conversions.
        self._kind = (int(sock.family), int(sock.type), sock.proto)
        self._tcp = sock.family in (socket.AF_INET, socket.AF_INET6)
        # uvloop's transports set TCP_NODELAY themselves; asyncio's accepted ones do not.
        self._nodelay = self._tcp and not type(loop).__module__.startswith("uvloop")
        self._polling = False
        self._backoff: asyncio.TimerHandle | None = None
        # Where siblings see this worker's open connections, and it theirs (with siblings).
        self._balance = slot if workers > 1 else None
        self._yielded: asyncio.TimerHandle | None = None  # leaving the queue to a sibling
        self._yielded_to: int | None = None  # that sibling's connections when it began
        self._passed_over: int | None = None  # and when it let the pause pass unused,
        self._passes = 0  # how many pauses in a row it let pass at that count,
        self._passed_at = 0.0  # the loop's time at the last
        self._attaching: set[asyncio.Task[None]] = set()
        self._all_closed: asyncio.Future[None] | None = None
        self._service = ServiceTime()
        self._busy_close = busy_close_min_service is not None and admission.ceiling > 0
        self._min_service = busy_close_min_service or 0.0

    def start(self) -> None:
        self._sync()

    def drain(self) -> None:
        """Stop accepting at once (the queue's share goes to siblings) and wind connections down."""
        self.admission.drain()
        self._sync()
        for conn in list(self.connections):
            conn.shutdown()

    async def wait_closed(self) -> None:
        """Return once every connection is closed (after :meth:`drain`)."""
        if self.connections:
            self._all_closed = self.loop.create_future()
            await self._all_closed

    def close_websockets(self) -> int:
        """Close every open WebSocket with 1012 (service restart); returns how many."""
        return sum(conn.going_away() for conn in list(self.connections))

    def abort_all(self) -> None:
        """Drop every connection, and stop the app code still running (some of it may have
        outlived its connection)."""
        for conn in list(self.connections):
            conn.abort()
        for task in self.app_tasks:
            task.cancel()

    # -- the accept path -----------------------------------------------------------------

    def full_seconds(self) -> float:
        """How long this worker has been at its ceiling, accepting nothing, in all."""
        since = self._full_since
        return self._full_total + (time.monotonic() - since if since is not None else 0.0)

    def _sync(self) -> None:
        """Poll the listening fd exactly while the worker may accept. Called whenever the
        answer may change (request() and release() skip it when it cannot)."""
        full = self.admission.full
        if full != (self._full_since is not None):
            now = time.monotonic()
            if full:
                self._full_since = now
            else:
                self._full_total += now - self._full_since  # type: ignore[operator]
                self._full_since = None
        want = self.admission.accepting and self._backoff is None and self._yielded is None
        if want != self._polling:
            if want:
                self.loop.add_reader(self._fd, self._on_readable)
            else:
                self.loop.remove_reader(self._fd)
            self._polling = want
        self._publish_open()  # also when a pause ends in a drain

    def _publish_open(self) -> None:
        """Publish this worker's connections while it accepts; a pause for the balance does
        not count as not accepting (a sibling that saw none would take everything)."""
        if self._balance is not None:
            accepting = self._polling or self._yielded is not None
            self._balance.accepting(len(self.connections) if accepting else None)

    def _should_yield(self, balance: SlotWriter) -> bool:
        """Whether to leave what waits to the sibling with the fewest connections that
        accepts: this worker holds more than BALANCE_FACTOR times as many, plus
        BALANCE_SLACK. Not when it left them already and that sibling took none meanwhile:
        its loop is busy (or blocked), and what waits is better taken here. Nor, once that
        sibling let BALANCE_STALLED pauses in a row pass at the same count (its loop is
        blocked, not just late for one), until its count moves or BALANCE_RETRY passed,
        while this worker has nothing in flight: it would serve what waits at once, so a
        pause would only delay it (every connection, for as long as the sibling's loop is
        blocked). With requests in flight it pauses again: taking all that waits would queue
        it behind them, and a pause per wake-up paces what it takes."""
        mine = len(self.connections)
        if mine <= BALANCE_SLACK:
            return False
        fewest = balance.fewest_open()
        if fewest is None or mine <= BALANCE_FACTOR * fewest + BALANCE_SLACK:
            self._yielded_to = self._passed_over = None
            return False
        if (
            fewest == self._passed_over
            and self._passes >= BALANCE_STALLED
            and not self.admission.load
            and self.loop.time() - self._passed_at < BALANCE_RETRY
        ):
            return False
        if self._yielded_to is not None and fewest <= self._yielded_to:
            self._passes = self._passes + 1 if fewest == self._passed_over else 1
            self._yielded_to, self._passed_over = None, fewest
            self._passed_at = self.loop.time()
            return False
        self._yielded_to = fewest
        return True

    def _end_yield(self) -> None:
        if self._yielded is not None:
            self._yielded.cancel()
            self._yielded = None
            self._sync()

    def _on_readable(self) -> None:
        """Accept this worker's share of the waiting connections, re-checking the ceiling
        before every single ``accept()`` (docs/admission.md, "Accepting", has the figures).

        The share is asked for after the first accept: every worker polling the socket is
        woken for a connection, and those that find none left need not ask. Before any, a
        worker that holds far more connections than a sibling leaves them to it."""
        if self._balance is not None and self._should_yield(self._balance):
            self._yielded = self.loop.call_later(BALANCE_PAUSE, self._end_yield)
            self._sync()
            return
        accepted, share = 0, 1
        while accepted < share and self.admission.accepting:
            try:
                fd, peer = self.sock._accept()  # type: ignore[attr-defined]
            except BlockingIOError:
                break  # none left: siblings took them (every worker polling was woken)
            except (InterruptedError, ConnectionAbortedError):
                continue  # that client left before it was accepted
            except OSError as exc:
                if exc.errno not in _RESOURCE_ERRNOS:
                    raise
                logger.warning("accept() failed (%s); pausing accepts for a moment", exc)
                self._backoff = self.loop.call_later(RESOURCE_BACKOFF, self._end_backoff)
                break
            self.admission.admit_accepted()
            self.accepted += 1
            self._attach(socket.socket(*self._kind, fd), peer)
            accepted += 1
            if accepted == 1:
                share = self._share()
        self._sync()

    def _share(self) -> int:
        """How many connections to accept at this wake-up, at most.

        While requests are slow (they block the loop, or wait long), one: a worker that took
        several would serve them one after another while a sibling that frees sooner could
        have had them. While they are cheap, the waiting connections divided by the workers
        (rounded up), since every worker polling the socket is woken together: one accept per
        wake-up cost a whole loop iteration per connection, at 0.75x uvicorn's new connections.
        Asked after the first accept: the connection just taken counts as one of the share.
        """
        if self._service.mean >= SLOW_SERVICE:
            return 1
        if self.workers == 1:
            return ACCEPT_BATCH  # nobody to share with
        queue = accept_queue(self.sock)
        if queue is None:
            return 1  # the kernel cannot say (a Unix socket): one at a time
        return min(ACCEPT_BATCH, 1 + -(-queue[0] // self.workers))

    def _end_backoff(self) -> None:
        self._backoff = None
        self._sync()

    def _attach(self, conn_sock: socket.socket, peer: object) -> None:
        # Not setblocking(False): connect_accepted_socket does it (asyncio and uvloop alike).
        if self._nodelay:
            conn_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = HttpConnection(self.settings, self, self.loop)
        if isinstance(peer, tuple):  # TCP: (host, port), and flow and scope for IPv6
            conn.client = (peer[0], peer[1])
        conn.server = self._local
        self.connections.add(conn)
        self._publish_open()
        setup = self.loop.connect_accepted_socket(lambda: conn, conn_sock, ssl=self.ssl)
        if self.ssl is not None:
            # A TLS handshake can take long: it runs in a task, which a stop can cancel.
            task = self.loop.create_task(self._handshake(setup, conn, conn_sock))
            self._attaching.add(task)
            task.add_done_callback(self._attaching.discard)
        else:
            self._advance(setup, conn, conn_sock)

    def _advance(
        self,
        setup: Coroutine[Any, Any, object],
        conn: HttpConnection,
        conn_sock: socket.socket,
        _: object = None,
    ) -> None:
        """Run ``connect_accepted_socket`` for a plain TCP connection without a task: all it
        waits for is its own ``connection_made`` call, one turn of the loop away, so this
        steps it by hand when that future is done. With two workers a task per connection
        cost 10% of new-connection throughput (``python -m benchmarks.accept_path
        --workers 2``)."""
        try:
            waiter = setup.send(None)
        except StopIteration:
            return
        except (OSError, asyncio.CancelledError) as exc:
            self._not_attached(conn, conn_sock, exc)
            return
        waiter.add_done_callback(functools.partial(self._advance, setup, conn, conn_sock))

    async def _handshake(
        self, setup: Coroutine[Any, Any, object], conn: HttpConnection, conn_sock: socket.socket
    ) -> None:
        try:
            await setup
        except OSError as exc:
            self._not_attached(conn, conn_sock, exc)

    def _not_attached(
        self, conn: HttpConnection, conn_sock: socket.socket, exc: BaseException
    ) -> None:
        logger.debug("could not set up an accepted connection: %r", exc)
        conn_sock.close()
        if conn.transport is None:
            conn.connection_lost(exc if isinstance(exc, Exception) else None)

    # -- the Gate its connections use --------------------------------------------------

    # request() and release() run for every request: they call _sync() only when the
    # change may start or stop the polling (it always does without a ceiling).

    def request(self, conn: HttpConnection) -> bool:
        admitted = self.admission.request(conn)
        if not admitted or self.admission.full:
            self._sync()  # queued, or now full: stop accepting
        return admitted

    def release(self) -> None:
        waiter = self.admission.release()
        if waiter is not None:
            waiter.admitted()
        if self._full_since is not None or not self._polling:
            self._sync()  # was full, or not accepting: maybe accepting again

    def cancel(self, conn: HttpConnection) -> None:
        self.admission.cancel(conn)
        self._sync()

    def started(self, method: str, path: str, task: asyncio.Task[None]) -> None:
        if self.slot is not None:
            self.slot.serving(method, path, time.monotonic())
        self.app_tasks.add(task)
        task.add_done_callback(self.app_tasks.discard)

    def responded(self, status: int, seconds: float) -> None:
        self._service.add(seconds)
        if self.slot is not None:
            self.slot.responded(status, seconds)

    def busy_close(self, started: float) -> bool:
        """Whether to close this response's connection; judged on the mean service time with
        this request's time so far counted in (the first slow request already counts)."""
        if not self._busy_close:
            return False
        mean = self._service.peek(self.loop.time() - started)
        if mean < self._min_service:
            return False  # the cost gate, here on every response: keep it cheap
        return busy_close(self.admission, mean, self._min_service, self._queue_depth)

    def _queue_depth(self) -> int:
        queue = accept_queue(self.sock)
        return queue[0] if queue else 0

    def websocket_open(self) -> bool:
        # A limit reached answers 503 at once rather than queueing the upgrade: a WebSocket
        # frees its place only when it closes, maybe hours later (docs/websockets.md).
        if self.max_websockets and self.websockets >= self.max_websockets:
            return False
        self.websockets += 1
        return True

    def websocket_closed(self) -> None:
        self.websockets -= 1

    def closed(self, conn: HttpConnection) -> None:
        self.connections.discard(conn)
        if self._yielded is not None and len(self.connections) <= BALANCE_SLACK:
            self._end_yield()  # running out of work: take new connections again
        self._publish_open()
        if not self.connections and self._all_closed is not None and not self._all_closed.done():
            self._all_closed.set_result(None)
