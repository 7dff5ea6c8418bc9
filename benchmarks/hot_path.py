"""The Python cost of one request, without sockets: asgisup's connection against uvicorn's.

wrk on this 2-core machine measures the server and the kernel together, and its rounds vary by
up to +-20%. This measures only what the two servers' own Python (and the parser and loop in
C under it) spends on a request: each server's protocol object is given a fake transport, fed
``GET /hello`` bytes, and the loop runs until the response is written. Two cases:

- ``keep-alive``: requests one after another on one connection;
- ``close``: a new connection per request (``connection_made``, the request, ``Connection:
  close``, ``connection_lost``).

Both run benchmarks.refapp with the access log off, on uvloop with httptools, or on asyncio
with h11 (``--pure``). asgisup's connection has its worker's real gate (a Listener with an
Admission and a scoreboard slot), so admission is counted in.

    .venv/bin/python -m benchmarks.hot_path [--requests 20000] [--rounds 5] [--pure]
    .venv/bin/python -m benchmarks.hot_path --profile keep-alive   # cProfile, asgisup only
    .venv/bin/python -m benchmarks.hot_path --ceiling 64   # asgisup with a ceiling vs none

Prints microseconds per request (median of rounds, servers alternating) and the ratio: above
1.0, the first server spends less.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import socket
import statistics
import time
from collections.abc import Callable
from typing import Any

from benchmarks import refapp

REQUEST = b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: wrk\r\n\r\n"
CLOSE_REQUEST = (
    b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: wrk\r\nConnection: close\r\n\r\n"
)


class FakeTransport(asyncio.Transport):
    """Counts the complete responses written; the rest of a transport does nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.closed = False
        self.protocol: asyncio.Protocol | None = None
        self._extra = {
            "peername": ("127.0.0.1", 50000),
            "sockname": ("127.0.0.1", 8000),
            "socket": None,
        }

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def write(self, data: Any) -> None:
        if data.endswith(refapp.HELLO):  # a response is complete (the body comes last)
            self.written += 1

    def writelines(self, lines: Any) -> None:
        self.write(b"".join(lines))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.protocol is not None:
                self.protocol.connection_lost(None)

    def abort(self) -> None:
        self.close()

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_reading(self) -> bool:
        return True

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


LISTENING: list[socket.socket] = []  # of asgisup_factory's listeners, for close_listeners()


def close_listeners() -> None:
    while LISTENING:
        LISTENING.pop().close()


def asgisup_factory(pure: bool, ceiling: int = 0) -> Callable[[], asyncio.Protocol]:
    from asgisup.admission import Admission
    from asgisup.config import Config
    from asgisup.protocols.http.connection import HttpConnection
    from asgisup.scoreboard import Scoreboard, SlotWriter
    from asgisup.sockinfo import shared_local_address
    from asgisup.worker.listener import Listener
    from asgisup.worker.process import build_settings

    config = Config.from_sources(
        "benchmarks.refapp:app",
        {"http": "h11" if pure else "httptools", "max_inflight": ceiling},
        {},
    )
    settings = build_settings(config, refapp.app, {}, None)
    settings.access_log = False
    loop = asyncio.get_event_loop()
    sock = socket.socket()  # the Listener wants one; no client ever connects to it
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    LISTENING.append(sock)
    board = Scoreboard(1)
    listener = Listener(
        loop,
        sock,
        Admission(config.max_inflight),
        settings,
        busy_close_min_service=config.busy_close_min_service,
        slot=SlotWriter(board, board.claim(1, config.max_inflight)),
    )

    local = shared_local_address(sock)

    def make() -> asyncio.Protocol:
        # What the accept path does for a new connection: count it, give it its addresses.
        listener.admission.load += 1
        conn = HttpConnection(settings, listener, loop)
        conn.client, conn.server = ("127.0.0.1", 50000), local
        listener.connections.add(conn)
        return conn

    return make


def uvicorn_factory(pure: bool) -> Callable[[], asyncio.Protocol]:
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    config = Config(
        refapp.app,
        http="h11" if pure else "httptools",
        loop="asyncio" if pure else "uvloop",
        access_log=False,
        lifespan="off",
        ws="none",
    )
    config.load()
    state = ServerState()
    protocol: Callable[..., asyncio.Protocol] = config.http_protocol_class  # type: ignore[assignment]

    def make() -> asyncio.Protocol:
        return protocol(config=config, server_state=state, app_state={})

    return make


async def _settle(transport: FakeTransport, writes: int) -> None:
    """Run the loop until the transport has seen ``writes`` complete responses."""
    while transport.written < writes:
        await asyncio.sleep(0)


async def keep_alive(make: Callable[[], asyncio.Protocol], requests: int) -> float:
    proto = make()
    transport = FakeTransport()
    transport.protocol = proto
    proto.connection_made(transport)
    start = time.perf_counter()
    for _ in range(requests):
        writes = transport.written + 1
        proto.data_received(REQUEST)
        await _settle(transport, writes)
    elapsed = time.perf_counter() - start
    transport.close()
    return elapsed / requests


async def close(make: Callable[[], asyncio.Protocol], requests: int) -> float:
    start = time.perf_counter()
    for _ in range(requests):
        proto = make()
        transport = FakeTransport()
        transport.protocol = proto
        proto.connection_made(transport)
        proto.data_received(CLOSE_REQUEST)
        await _settle(transport, 1)
        while not transport.closed:
            await asyncio.sleep(0)
    return (time.perf_counter() - start) / requests


CASES = {"keep-alive": keep_alive, "close": close}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pure", action="store_true", help="h11 + asyncio (default httptools)")
    parser.add_argument("--profile", choices=CASES, help="cProfile asgisup in one case")
    parser.add_argument(
        "--ceiling", type=int, default=0, help="compare asgisup with this --max-inflight to none"
    )
    args = parser.parse_args()

    if not args.pure:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    if args.ceiling:
        servers = {
            f"asgisup --max-inflight {args.ceiling}": asgisup_factory(args.pure, args.ceiling),
            "asgisup": asgisup_factory(args.pure),
        }
    else:
        servers = {"asgisup": asgisup_factory(args.pure), "uvicorn": uvicorn_factory(args.pure)}
    for case in CASES.values():  # warm up both
        for make in servers.values():
            loop.run_until_complete(case(make, 500))

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        loop.run_until_complete(CASES[args.profile](next(iter(servers.values())), args.requests))
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return

    stack = "h11 + asyncio" if args.pure else "httptools + uvloop"
    print(f"{stack}, {args.requests} requests x {args.rounds} rounds, microseconds per request")
    (a, make_a), (b, make_b) = servers.items()
    for name, case in CASES.items():
        times: dict[str, list[float]] = {a: [], b: []}
        for _ in range(args.rounds):
            times[a].append(loop.run_until_complete(case(make_a, args.requests)) * 1e6)
            times[b].append(loop.run_until_complete(case(make_b, args.requests)) * 1e6)
        ours, theirs = statistics.median(times[a]), statistics.median(times[b])
        print(f"  {name:10}  {a} {ours:6.2f}  {b} {theirs:6.2f}  {b}/{a} {theirs / ours:.2f}x")


if __name__ == "__main__":
    main()
