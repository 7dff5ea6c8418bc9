"""Pure supervision and keep-alive policies, and what the kernel says about a listening socket."""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from asgisup.admission import Admission, ServiceTime, busy_close
from asgisup.sockinfo import accept_queue, set_defer_accept, shared_local_address
from asgisup.supervisor.policy import (
    MAX_RETRY,
    MIB,
    QueueWatch,
    RestartBackoff,
    recycle_reason,
    request_limit,
)
from tests.serverproc import await_until
from tests.wsframes import frame


def _no_queue() -> int:
    return 0


def _queue_should_not_be_read() -> int:
    raise AssertionError("the queue depth was read although the answer was already known")


def test_busy_close_needs_a_ceiling_and_expensive_requests() -> None:
    unlimited: Admission[str] = Admission(0)
    unlimited.admit_accepted()
    assert not busy_close(unlimited, 1.0, 0.001, _queue_should_not_be_read)
    limited: Admission[str] = Admission(1)
    limited.admit_accepted()
    limited.request("waiter")
    assert not busy_close(limited, 0.0005, 0.001, _queue_should_not_be_read)  # cheap: keep
    assert busy_close(limited, 0.002, 0.001, _queue_should_not_be_read)  # a waiter: close


def test_busy_close_when_others_wait_in_the_accept_queue() -> None:
    admission: Admission[str] = Admission(2)
    admission.admit_accepted()  # only this response's slot: the worker has room
    assert not busy_close(admission, 0.01, 0.001, _no_queue)
    assert busy_close(admission, 0.01, 0.001, lambda: 3)
    admission.admit_accepted()  # full now, but this response frees a slot
    assert not busy_close(admission, 0.01, 0.001, _no_queue)
    admission.request("waiter")
    assert busy_close(admission, 0.01, 0.001, _queue_should_not_be_read)


def test_service_time_tracks_recent_requests() -> None:
    assert ServiceTime().add(0.005) == 0.005  # the first request counts fully
    service = ServiceTime()
    for _ in range(30):
        service.add(0.010)
    assert service.mean == pytest.approx(0.010, rel=0.01)
    for _ in range(60):
        service.add(0.0001)
    assert service.mean < 0.001
    # One request paused 4 ms by the scheduler does not make cheap requests look expensive.
    service.add(0.004)
    assert service.mean < 0.001


def test_restart_backoff() -> None:
    backoff = RestartBackoff()
    assert backoff.delay(uptime=0.1) == 0.0  # a one-off crash: restart at once
    delays = [backoff.delay(uptime=0.1) for _ in range(10)]
    assert delays[:3] == [0.5, 1.0, 2.0]
    assert delays[-1] == MAX_RETRY
    assert backoff.delay(uptime=60.0) == 0.0  # it ran long enough: start afresh


def test_queue_watch_warns_only_when_it_stays_deep() -> None:
    watch = QueueWatch(patience=3, quiet=60)
    assert watch.sample(100, 128, 0) is None
    assert watch.sample(100, 128, 1) is None
    assert watch.sample(10, 128, 2) is None  # the streak is broken
    assert [watch.sample(100, 128, t) is not None for t in (3, 4, 5, 6)] == [
        False,
        False,
        True,
        False,
    ]
    message = watch.sample(100, 128, 70)
    assert message is not None and "--workers" in message and "--max-inflight" in message


def _listener(backlog: int = 8) -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(backlog)
    return sock


def _wait_depth(sock: socket.socket, depth: int) -> tuple[int, int]:
    deadline = time.monotonic() + 30
    while True:
        queue = accept_queue(sock)
        assert queue is not None
        if queue[0] == depth or time.monotonic() > deadline:
            return queue
        time.sleep(0.01)


async def _closed(clients: list[socket.socket], listener: Any) -> None:
    """Close these clients and wait until the listener has released what they held."""
    for client in clients:
        client.close()
    await await_until(lambda: not listener.admission.load)


def test_accept_queue_depth_and_limit() -> None:
    with _listener(backlog=8) as listener:
        clients = [socket.create_connection(listener.getsockname()) for _ in range(3)]
        try:
            assert _wait_depth(listener, 3) == (3, 8)
            listener.accept()[0].close()
            assert _wait_depth(listener, 2) == (2, 8)
        finally:
            for client in clients:
                client.close()


def test_accept_queue_is_none_for_unix_sockets(tmp_path: object) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        assert accept_queue(sock) is None


class _Named:
    """Stands in for a listening socket bound to a wildcard address (tests never bind one)."""

    def __init__(self, name: object) -> None:
        self.name = name

    def getsockname(self) -> object:
        return self.name


def test_shared_local_address(tmp_path: Path) -> None:
    with _listener() as listener:
        assert shared_local_address(listener) == ("127.0.0.1", listener.getsockname()[1])
    with socket.socket(socket.AF_UNIX) as unix:
        unix.bind(str(tmp_path / "s"))
        assert shared_local_address(unix) == (str(tmp_path / "s"), None)
    for name, expected in [
        (("0.0.0.0", 80), None),
        (("::", 80, 0, 0), None),
        (("::1", 80, 0, 0), ("::1", 80)),
        (("fe80::1%eth0", 80, 0, 2), ("fe80::1%eth0", 80)),
        (b"\0abstract", None),
        ("", None),
    ]:
        assert shared_local_address(_Named(name)) == expected  # type: ignore[arg-type]


def test_defer_accept_queues_a_connection_only_once_it_sends() -> None:
    with _listener() as listener, _listener() as control:
        assert set_defer_accept(listener, 5)
        with (
            socket.create_connection(listener.getsockname()) as client,
            socket.create_connection(control.getsockname()),
        ):
            # The later, plain connection is acceptable: the kernel has handled both handshakes.
            assert _wait_depth(control, 1)[0] == 1
            queue = accept_queue(listener)
            assert queue is not None and queue[0] == 0  # connected, silent: not acceptable yet
            client.sendall(b"GET / HTTP/1.1\r\n")
            assert _wait_depth(listener, 1)[0] == 1


def test_request_limit_spreads_recycling() -> None:
    rng = random.Random(1)
    assert request_limit(0, 10, rng) is None
    limits = {request_limit(100, 10, rng) for _ in range(200)}
    assert min(limits) >= 90 and max(limits) <= 110 and len(limits) > 5  # type: ignore[type-var]
    small = {request_limit(1, 5, rng) for _ in range(100)}
    assert 1 in small and small <= set(range(1, 7))  # never below one request


def test_recycle_reason() -> None:
    assert recycle_reason(9, 10, None, 0) is None
    assert recycle_reason(10, 10, None, 0) == (
        "max_requests",
        "served 10 requests (--max-requests)",
    )
    assert recycle_reason(10**6, None, 10**9, 0) is None  # no limits, no recycling
    assert recycle_reason(0, None, 300 * MIB, 200) == (
        "max_memory",
        "uses 300 MiB (--max-worker-memory 200)",
    )
    assert recycle_reason(0, None, 100 * MIB, 200) is None
    assert recycle_reason(0, None, None, 200) is None  # memory unknown: leave it be


def test_service_time_peek_leaves_the_mean_alone() -> None:
    service = ServiceTime()
    assert service.peek(0.004) == 0.004
    assert service.mean == 0.0 and service.samples == 0
    service.add(0.002)
    assert service.peek(0.004) == pytest.approx(0.003)
    assert service.add(0.004) == pytest.approx(0.003)


async def test_a_worker_accepts_its_share_while_requests_are_cheap() -> None:
    """One per wake-up while requests are slow; the waiting connections divided by the
    workers while they are cheap; everything waiting when it is alone."""
    import asyncio

    from asgisup.protocols.http.settings import HttpSettings
    from asgisup.worker.listener import ACCEPT_BATCH, Listener

    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("no request is sent")

    loop = asyncio.get_running_loop()
    settings = HttpSettings(app=app, parser=lambda: None)  # type: ignore[arg-type, return-value]
    with _listener(backlog=16) as sock:
        clients = [socket.create_connection(sock.getsockname()) for _ in range(5)]
        try:
            _wait_depth(sock, 5)
            shared = Listener(loop, sock, Admission(0), settings, workers=2)
            # Asked after a first accept: that one, and its part of the 5 still waiting.
            assert shared._share() == 4  # 1 + 5 / 2 workers, rounded up
            shared.responded(200, 0.002)  # slow requests: one at a time
            assert shared._share() == 1
            alone = Listener(loop, sock, Admission(0), settings, workers=1)
            assert alone._share() == ACCEPT_BATCH
            # The ceiling still comes first: with room for 2, two of the five are accepted.
            full = Listener(loop, sock, Admission(2), settings, workers=1)
            full._on_readable()
            assert full.accepted == 2 and full.admission.load == 2
            assert _wait_depth(sock, 3)[0] == 3
            await asyncio.gather(*full._attaching)  # the two connections are set up
            full.abort_all()
            full.drain()  # and the socket is no longer polled
            await full.wait_closed()
        finally:
            for client in clients:
                client.close()


def test_rolling_restart_replaces_one_worker_at_a_time_and_can_be_abandoned() -> None:
    from asgisup.supervisor.handles import WorkerHandle
    from asgisup.supervisor.rolling import RollingRestart

    workers = {pid: WorkerHandle(i, pid, i, 1, None, 0.0) for i, pid in enumerate((10, 11, 12))}
    rolling = RollingRestart()
    rolling.begin([10, 11, 12])
    first = rolling.next(workers, generation=2)
    assert first is workers[10]
    workers[20] = WorkerHandle(0, 20, 3, 2, None, 0.0)  # its replacement boots
    rolling.booting = 20
    assert rolling.next(workers, generation=2) is None  # one at a time
    rolling.ready(20, generation=2)
    del workers[10]
    workers[11].retiring = True  # replaced for another reason meanwhile: skipped
    assert rolling.next(workers, generation=2) is workers[12]
    rolling.booting = 21
    assert rolling.abandon(21)  # the replacement failed: the restart is given up
    assert rolling.next(workers, generation=2) is None
    assert not rolling.abandon(22)  # a replacement outside any restart


def test_worker_handle_stops_once_and_keeps_the_earliest_kill_deadline() -> None:
    from asgisup.supervisor.handles import WorkerHandle

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    handle = WorkerHandle(0, child.pid, 0, 1, None, 0.0)
    try:
        handle.stop(100.0)
        assert handle.stopping and handle.kill_at == 100.0
        handle.stop(50.0)
        handle.stop(80.0)
        assert handle.kill_at == 50.0
        assert child.wait(30) == -signal.SIGTERM
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_worker_handle_kill_leaves_no_deadline() -> None:
    from asgisup.supervisor.handles import WorkerHandle

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    handle = WorkerHandle(0, child.pid, 0, 1, None, 0.0)
    handle.kill_at = 5.0
    handle.kill()
    assert handle.kill_at is None
    assert child.wait(30) == -signal.SIGKILL


async def test_on_a_unix_socket_the_share_is_everything_alone_and_one_shared(
    tmp_path: Path,
) -> None:
    """The kernel cannot count a Unix socket's queue: alone, a worker accepts until none is
    left (at most ACCEPT_BATCH); shared, one per wake-up."""
    import asyncio

    from asgisup.protocols.http.settings import HttpSettings
    from asgisup.worker.listener import ACCEPT_BATCH, Listener

    loop = asyncio.get_running_loop()
    settings = HttpSettings(app=None, parser=lambda: None)  # type: ignore[arg-type, return-value]
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "s"))
        sock.listen(8)
        assert Listener(loop, sock, Admission(0), settings, workers=1)._share() == ACCEPT_BATCH
        assert Listener(loop, sock, Admission(0), settings, workers=2)._share() == 1


async def test_the_listener_tracks_app_calls_until_they_return() -> None:
    """A graceful stop waits for the app calls in ``app_tasks``: each is there from its
    request until the app returns (after the response, for an app that goes on), and gone
    after (the set does not grow with the requests served). WebSockets alike."""
    import asyncio

    from asgisup.protocols.http.parsers import HttptoolsParser
    from asgisup.protocols.http.settings import HttpSettings
    from asgisup.protocols.websocket.engines import engine_factory
    from asgisup.protocols.websocket.session import WsSettings
    from asgisup.worker.listener import Listener

    go_on = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1000})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        if scope["path"] == "/linger":
            await go_on.wait()

    loop = asyncio.get_running_loop()
    engine = engine_factory("wsproto")
    assert engine is not None
    ws = WsSettings(engine=engine, ping_interval=0)
    settings = HttpSettings(app=app, parser=HttptoolsParser, access_log=False, ws=ws)
    with _listener() as sock:
        sock.setblocking(False)  # as in a worker: accept() until none is left
        listener = Listener(loop, sock, Admission(0), settings)
        listener.start()
        reader, writer = await asyncio.open_connection(*sock.getsockname())
        try:
            for path in ("/a", "/b", "/c", "/linger"):
                writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                await reader.readuntil(b"\r\n\r\nok")
            for _ in range(100):  # let the ended calls be forgotten; the last one still runs
                await asyncio.sleep(0)
            assert len(listener.app_tasks) == 1
            (lingering,) = listener.app_tasks
            go_on.set()
            await lingering
            assert not listener.app_tasks
            ws_reader, ws_writer = await asyncio.open_connection(*sock.getsockname())
            ws_writer.write(
                b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            assert (await ws_reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101 ")
            await ws_reader.readexactly(4)  # the close frame: 0x88, length 2, code 1000
            ws_writer.write(frame(0x8, b"\x03\xe8"))  # the client's close frame, 1000
            assert await ws_reader.read() == b""  # the server closed the connection
            ws_writer.close()
            await await_until(lambda: not listener.app_tasks)
        finally:
            writer.close()
            listener.drain()
            await listener.wait_closed()


async def test_a_worker_leaves_new_connections_to_a_sibling_with_far_fewer() -> None:
    """With siblings, a worker woken while it holds more than twice the connections of the
    sibling with the fewest that polls (plus 2) leaves the queue to it for a moment, and
    takes what waits once that sibling took nothing in that time; once two pauses in a row
    passed so, and while it has nothing in flight, without pausing again until that
    sibling's count moves (its loop is blocked, or busy) or BALANCE_RETRY passed."""
    import asyncio

    from asgisup.protocols.http.settings import HttpSettings
    from asgisup.scoreboard import Scoreboard
    from asgisup.worker.listener import BALANCE_RETRY, Listener

    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("no request is sent")

    loop = asyncio.get_running_loop()
    settings = HttpSettings(app=app, parser=lambda: None)  # type: ignore[arg-type, return-value]
    board = Scoreboard(4)
    mine, sibling = board.writer(0), board.writer(1)
    held = [object() for _ in range(6)]  # stand-ins for the connections this worker holds
    with _listener(backlog=16) as sock:
        sock.setblocking(False)
        listener = Listener(loop, sock, Admission(0), settings, slot=mine, workers=2)
        listener.start()
        assert sibling.fewest_open() == 0  # it publishes its connections while it accepts
        listener.connections.update(held)  # type: ignore[arg-type]
        clients = [socket.create_connection(sock.getsockname())]
        try:
            _wait_depth(sock, 1)
            sibling.accepting(1)  # 6 > 2 * 1 + 2: leave it to the sibling
            listener._on_readable()
            assert listener.accepted == 0 and not listener._polling
            # Its siblings still see its connections: one that saw it gone would take all.
            assert sibling.fewest_open() == 6
            listener._end_yield()  # the pause ends (its timer, called early)
            listener._on_readable()  # the sibling took nothing meanwhile: take it
            assert listener.accepted == 1
            clients.append(socket.create_connection(sock.getsockname()))
            _wait_depth(sock, 1)
            sibling.accepting(0)  # it closed one (its loop runs): 7 against 0, leave it again
            listener._on_readable()
            assert listener.accepted == 1 and not listener._polling
            listener._end_yield()
            sibling.accepting(2)  # the sibling is taking connections: leave it to it still
            listener._on_readable()
            assert listener.accepted == 1 and not listener._polling
            sibling.accepting(3)  # 7 <= 2 * 3 + 2: balanced enough, take it
            listener._end_yield()
            listener._on_readable()
            assert listener.accepted == 2 and listener._polling
            clients.append(socket.create_connection(sock.getsockname()))
            _wait_depth(sock, 1)
            sibling.accepting(0)
            listener._on_readable()  # 8 against 0: leave it...
            assert not listener._polling
            for stand_in in held:  # ...until this worker is down to 2 connections
                listener.closed(stand_in)  # type: ignore[arg-type]
            assert listener._polling and listener._yielded is None
            listener._on_readable()
            assert listener.accepted == 3
            sibling.accepting(None)  # no sibling accepts: nothing to leave it to
            listener.connections.update(held)  # type: ignore[arg-type]
            clients.append(socket.create_connection(sock.getsockname()))
            _wait_depth(sock, 1)
            listener._on_readable()
            assert listener.accepted == 4
            sibling.accepting(1)  # 10 against 1: leave it
            clients.append(socket.create_connection(sock.getsockname()))
            _wait_depth(sock, 1)
            listener._on_readable()
            assert listener.accepted == 4 and not listener._polling
            listener._end_yield()
            listener._on_readable()  # the sibling took nothing meanwhile: take it
            assert listener.accepted == 5
            await _closed(clients[:5], listener)  # their clients leave: nothing in flight
            clients.append(socket.create_connection(sock.getsockname()))
            _wait_depth(sock, 1)
            listener._on_readable()  # still 1, but one pause passed is no stall yet: pause
            assert listener.accepted == 5 and not listener._polling
            listener._end_yield()
            listener._on_readable()  # the second in a row passed: its loop is blocked
            assert listener.accepted == 6
            await _closed(clients[5:6], listener)
            clients.append(socket.create_connection(sock.getsockname()))
            _wait_depth(sock, 1)
            listener._on_readable()  # still 1: take it at once, no pause for that sibling
            assert listener.accepted == 7 and listener._polling
            await _closed(clients[6:7], listener)
            clients.append(socket.create_connection(sock.getsockname()))
            _wait_depth(sock, 1)
            listener._on_readable()  # the same, as long as its count does not move...
            assert listener.accepted == 8 and listener._polling
            await _closed(clients[7:8], listener)
            listener._passed_at -= BALANCE_RETRY  # ...for BALANCE_RETRY: then try it again
            clients.append(socket.create_connection(sock.getsockname()))
            _wait_depth(sock, 1)
            listener._on_readable()
            assert listener.accepted == 8 and not listener._polling
            listener._end_yield()
            listener._on_readable()  # it took nothing meanwhile: take it
            assert listener.accepted == 9
            # With a request in flight here (an accepted connection counts until its first
            # response), pause even for a stalled sibling: that paces what this worker takes
            # in a burst, where no loop has time to move its count.
            assert listener.admission.load == 1
            clients.append(socket.create_connection(sock.getsockname()))
            _wait_depth(sock, 1)
            listener._on_readable()
            assert listener.accepted == 9 and not listener._polling
            listener._end_yield()
            listener._on_readable()
            assert listener.accepted == 10
            sibling.accepting(2)  # it took one: its loop runs again, so leave it to it
            clients.append(socket.create_connection(sock.getsockname()))
            _wait_depth(sock, 1)
            listener._on_readable()
            assert listener.accepted == 10 and not listener._polling
            listener._end_yield()
            for stand_in in held:
                listener.closed(stand_in)  # type: ignore[arg-type]
            listener.abort_all()
            listener.drain()
            await listener.wait_closed()
            assert sibling.fewest_open() is None  # draining: it no longer accepts
        finally:
            for client in clients:
                client.close()
            board.close()


async def test_a_stop_closes_a_connection_accepted_in_the_same_turn() -> None:
    """drain() in the turn of the loop that accepted a connection: the connection has no
    transport yet, and closes once it has one rather than at the keep-alive timeout."""
    import asyncio

    from asgisup.protocols.http.settings import HttpSettings
    from asgisup.worker.listener import Listener

    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("no request is sent")

    loop = asyncio.get_running_loop()
    settings = HttpSettings(
        app=app,
        parser=lambda: None,  # type: ignore[arg-type, return-value]
        timeout_keep_alive=600.0,
        timeout_request_head=600.0,
    )
    with _listener() as sock, socket.create_connection(sock.getsockname()) as client:
        sock.setblocking(False)
        _wait_depth(sock, 1)
        listener = Listener(loop, sock, Admission(0), settings)
        listener._on_readable()
        (conn,) = listener.connections
        assert conn.transport is None  # connect_accepted_socket has not run its turn
        listener.drain()
        await asyncio.wait_for(listener.wait_closed(), 30)
        client.settimeout(30)
        assert client.recv(1) == b""  # closed by the server
