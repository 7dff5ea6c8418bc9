"""Does accepting one connection at a time in Python cost throughput? A minimal server (no
HTTP parsing: it answers any bytes with a fixed response and closes) run three ways on uvloop,
under wrk with a new connection per request:

- ``server``: ``loop.create_server(sock=...)``, uvloop's own accept loop in C (uvicorn's way);
- ``task``: asgisup's way: the listening fd polled with ``add_reader``, one ``accept()`` per
  wake-up, ``connect_accepted_socket`` run in a task;
- ``no-task``: the same, with the ``connect_accepted_socket`` coroutine driven by hand.

    .venv/bin/python -m benchmarks.accept_path [--rounds 3] [--duration 3] [--workers 1]
        [--connections 32]

With ``--workers 2`` the server forks after ``listen()`` and two processes poll the socket,
each woken for every connection (the herd of DESIGN.md), as with asgisup's workers.

Servers alternate round by round; the medians are printed (requests/s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

from benchmarks.servers import free_port
from benchmarks.throughput import wrk

RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
MODES = ("server", "task", "no-task")


class Answer(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.transport.write(RESPONSE)
        self.transport.close()


def listen(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def serve(mode: str, sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    if mode == "server":
        await loop.create_server(Answer, sock=sock)
    else:
        kind = (int(sock.family), int(sock.type), sock.proto)
        tasks: set[asyncio.Task[object]] = set()

        def on_readable() -> None:
            try:
                fd, _ = sock._accept()  # type: ignore[attr-defined]
            except BlockingIOError:
                return
            accepted = socket.socket(*kind, fd)
            coro = loop.connect_accepted_socket(Answer, accepted)
            if mode == "task":
                task = loop.create_task(coro)
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                return

            def step(_: object = None) -> None:
                with contextlib.suppress(StopIteration):
                    coro.send(None).add_done_callback(step)

            step()

        loop.add_reader(sock.fileno(), on_readable)
    await asyncio.Event().wait()


def measure(mode: str, duration: float, workers: int, connections: int) -> float:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.accept_path", "--serve", mode, str(port), str(workers)],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        return wrk(port, "/", "close", duration, connections)
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the workers forked from it too
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the socket")
    parser.add_argument("--connections", type=int, default=32, help="wrk's connections")
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)  # MODE PORT WORKERS
    args = parser.parse_args()
    if args.serve:
        import uvloop

        mode, port, workers = args.serve[0], int(args.serve[1]), int(args.serve[2])
        sock = listen(port)
        for _ in range(workers - 1):
            if os.fork() == 0:
                break  # a worker: serve the same socket
        uvloop.run(serve(mode, sock))
        return
    results: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            results[mode].append(measure(mode, args.duration, args.workers, args.connections))
    for mode, rates in results.items():
        rounds = ", ".join(f"{rate:.0f}" for rate in rates)
        print(f"{mode:8} {statistics.median(rates):8.0f} req/s (rounds {rounds})")


if __name__ == "__main__":
    main()
