"""A closed-loop WebSocket echo load generator: how many messages per second a server echoes.

N connections (default 16) are spread over P client processes (default 1 on a 2-core machine,
else 2). Each connection sends a message (32 bytes of text, or 1 KiB of binary with
``--message binary``) and waits for its echo before it sends the next. Once every connection
is open, all processes start the clock together: a warm-up (default 1 s), then the measured
window (``--duration``). The result is the echoes received inside the window divided by the
window's seconds, and the errors, by kind.

The client has to be cheap: on a 2-core machine the server's one worker and the client get a
core each, so the client must spend less CPU per echo than the server does, or it sets the rate.
It is the ``websockets`` library's Sans-I/O ``ClientProtocol`` (handshake, framing, a fresh mask
per frame, deflate; masking in C) driven straight from an ``asyncio.Protocol`` on uvloop (when
installed): each echo is checked and the next message sent inside ``data_received``, with no
task or future per message. The library's asyncio client (``websockets.asyncio.client``) costs
about 1.5 times as much per echo (about 24 us against 16 us, text 32 B, on a busy 2-core
machine), and against a fast server it was the bottleneck: with it, asgisup measured 45k
echoes/s with the client at 0.88 of a core; with this one 61k, as fast as hand-built frames
that left the client half idle.
Per-message deflate is off unless ``--deflate`` asks for it; there are no keep-alive pings.
Each process reports the CPU it spent in the window (``client_cpu``, the busiest process's share
of one core): near 1.0 means the client may have been the bottleneck.

Always bounded in time: opening a connection, the echoes (a connection still waiting GRACE
seconds after the window ends counts as a timeout) and closing all have deadlines, and a client
process that has not reported by the overall deadline is killed and counted as an error.

    .venv/bin/python -m benchmarks.wsload --port 8000 --path /ws --duration 3 --connections 16

prints one JSON line; the exit status is 1 when there were errors or no echoes at all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import queue
import sys
import threading
import time
from collections.abc import Coroutine
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

MessageKind = Literal["text", "binary"]

PAYLOADS: dict[MessageKind, str | bytes] = {
    "text": "0123456789abcdefghijklmnopqrstuv",  # 32 bytes of UTF-8
    "binary": bytes(range(256)) * 4,  # 1 KiB
}
OPEN_TIMEOUT = 10.0  # per connection, handshake included
GRACE = 5.0  # how long past the window's end an echo may still take before it is a timeout
CLOSE_TIMEOUT = 2.0
SPAWN_ALLOWANCE = 15.0  # a fresh interpreter per client process, importing websockets
# Leave a core to the server's worker: on a 2-core machine a second client process only
# competes with it (measured against uvicorn: 1 process ~36k echoes/s, 2 processes ~31-35k).
DEFAULT_PROCESSES = 1 if (os.cpu_count() or 1) <= 2 else 2


def message_label(kind: MessageKind, deflate: bool = False) -> str:
    """The message, as a reader would name it: ``text 32 B``, ``binary 1024 B, deflate``."""
    payload = PAYLOADS[kind]
    size = len(payload.encode()) if isinstance(payload, str) else len(payload)
    return f"{kind} {size} B{', deflate' if deflate else ''}"


@dataclass(frozen=True)
class Load:
    """One run of the load generator."""

    port: int
    host: str = "127.0.0.1"
    path: str = "/ws"
    connections: int = 16
    processes: int = DEFAULT_PROCESSES
    duration: float = 5.0  # the measured window, in seconds
    warmup: float = 1.0
    message: MessageKind = "text"
    deflate: bool = False

    @property
    def uri(self) -> str:
        return f"ws://{self.host}:{self.port}{self.path}"

    @property
    def label(self) -> str:
        return message_label(self.message, self.deflate)

    def deadline(self) -> float:
        """Seconds after which the client processes are killed, whatever they are doing."""
        # open, wait at the barrier for the slowest process to open, run, drain, close
        return (
            SPAWN_ALLOWANCE + 2 * OPEN_TIMEOUT + self.warmup + self.duration + GRACE + CLOSE_TIMEOUT
        )


@dataclass
class Part:
    """What one client process saw."""

    echoes: int = 0  # echoes received inside the measured window
    cpu_s: float = 0.0  # this process's CPU time inside the window
    errors: dict[str, int] = field(default_factory=dict)

    def add_error(self, name: str) -> None:
        self.errors[name] = self.errors.get(name, 0) + 1


@dataclass(frozen=True)
class Result:
    """What the whole run saw."""

    messages_per_s: float
    echoes: int
    seconds: float
    client_cpu: float  # the busiest client process's CPU seconds per window second
    errors: dict[str, int]  # kind -> count

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def failure(self) -> str | None:
        """None when the run was clean; otherwise what went wrong, in one line."""
        if not self.errors and self.echoes > 0:
            return None
        if not self.errors:
            return "no echo received in the measured window"
        kinds = "; ".join(f"{count} x {name}" for name, count in sorted(self.errors.items()))
        return f"{self.error_count} errors: {kinds}"


class BadEcho(Exception):
    """The server sent back something other than the message it was sent."""


def spread(connections: int, processes: int) -> list[int]:
    """How many connections each client process opens: as even as can be, larger ones first.

    Raises ValueError unless 1 <= processes <= connections.
    """
    if not 1 <= processes <= connections:
        raise ValueError(
            f"need 1 <= processes <= connections, got {processes} processes "
            f"for {connections} connections"
        )
    share, extra = divmod(connections, processes)
    return [share + (index < extra) for index in range(processes)]


def combine(parts: list[Part], seconds: float) -> Result:
    """One Result from the Parts of all client processes, over a window of ``seconds``."""
    errors: dict[str, int] = {}
    for part in parts:
        for name, count in part.errors.items():
            errors[name] = errors.get(name, 0) + count
    echoes = sum(part.echoes for part in parts)
    busiest = max((part.cpu_s for part in parts), default=0.0)
    return Result(echoes / seconds, echoes, seconds, busiest / seconds, errors)


def error_name(exc: BaseException) -> str:
    """A short, stable name for a client-side failure, to count failures by kind."""
    if isinstance(exc, InvalidStatus):
        return f"handshake rejected: HTTP {exc.response.status_code}"
    if isinstance(exc, InvalidHandshake):
        return f"handshake failed: {exc}"
    if isinstance(exc, ConnectionClosed):
        code = "no close frame" if exc.rcvd is None else f"code {exc.rcvd.code}"
        return f"closed by the server ({code})"
    if isinstance(exc, BadEcho):
        return "echo differs from the message sent"
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    return type(exc).__name__  # OSError and its kin: ConnectionRefusedError, ...


class _EchoConnection(asyncio.Protocol):
    """One connection: websockets' Sans-I/O protocol, driven from asyncio's callbacks.

    The echo loop runs inside data_received: each echo checked and the next message sent in
    the same callback, no task or future per message (see the module docstring for why).
    """

    def __init__(self, load: Load, part: Part) -> None:
        extensions = enable_client_permessage_deflate(None) if load.deflate else None
        self.protocol = ClientProtocol(parse_uri(load.uri), extensions=extensions)
        payload = PAYLOADS[load.message]
        self.payload = payload.encode() if isinstance(payload, str) else payload
        self.opcode = Opcode.TEXT if isinstance(payload, str) else Opcode.BINARY
        self.part = part
        self.mark = self.end = float("inf")  # set by start()
        self.fragments: list[bytes] = []
        self.failed = False
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()  # handshake done or failed
        self.finished: asyncio.Future[None] = loop.create_future()  # window over or failed
        self.closed: asyncio.Future[None] = loop.create_future()  # the socket is gone
        self.transport: asyncio.Transport | None = None

    # asyncio's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.protocol.send_request(self.protocol.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        self.protocol.receive_data(data)
        self._handle()

    def eof_received(self) -> None:
        self.protocol.receive_eof()
        self._handle()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.protocol.state is not State.CLOSED:
            self.protocol.receive_eof()
            self._handle()
        self.abort(exc or self._why_ended() or ConnectionResetError("connection lost"))
        _resolve(self.closed)

    # the echo loop's side

    def start(self, mark: float, end: float) -> None:
        """Send the first message; echoes received in [mark, end) count; none sent after end."""
        self.mark, self.end = mark, end
        self._send()

    def close(self) -> None:
        """Start the closing handshake (code 1000); ``closed`` resolves when the server ends it."""
        _resolve(self.finished)  # our close: how the connection ends from here is no error
        if not self.failed and self.protocol.state is State.OPEN:
            self.protocol.send_close(1000)
            self._flush()

    def abort(self, exc: BaseException) -> None:
        """Count ``exc`` as this connection's error and drop the connection.

        Does nothing once the connection has failed or its window is over: a connection
        counts one error at most, and none for the way it ends after the window.
        """
        if self.failed or self.finished.done():
            return
        self.failed = True
        self.part.add_error(error_name(exc))
        _resolve(self.opened)
        _resolve(self.finished)
        if self.transport is not None:
            self.transport.abort()

    def _send(self) -> None:
        if self.opcode is Opcode.TEXT:
            self.protocol.send_text(self.payload)
        else:
            self.protocol.send_binary(self.payload)
        self._flush()

    def _handle(self) -> None:
        for event in self.protocol.events_received():
            if isinstance(event, Response):
                if self.protocol.handshake_exc is None:
                    _resolve(self.opened)
            elif not isinstance(event, Frame):
                continue
            elif event.opcode in (self.opcode, Opcode.CONT):
                self._fragment(bytes(event.data), event.fin)  # bytes(): no copy of bytes
            elif event.opcode in (Opcode.TEXT, Opcode.BINARY):
                self.abort(BadEcho())  # text echoed as bytes, or the other way round
        self._flush()  # what the protocol answers on its own: pongs, the closing handshake
        why = self._why_ended()
        if why is not None:
            self.abort(why)

    def _why_ended(self) -> BaseException | None:
        if self.protocol.handshake_exc is not None:
            return self.protocol.handshake_exc
        if self.protocol.state is State.CLOSED:
            return self.protocol.close_exc
        return None

    def _fragment(self, data: bytes, fin: bool) -> None:
        if not fin:
            self.fragments.append(data)
            return
        if self.fragments:
            data = b"".join([*self.fragments, data])
            self.fragments.clear()
        if data != self.payload:
            self.abort(BadEcho())
            return
        now = time.monotonic()
        self.part.echoes += self.mark <= now < self.end
        if now >= self.end:
            _resolve(self.finished)
        elif self.protocol.state is State.OPEN:  # not when a close frame came in the same read
            self._send()

    def _flush(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        for data in self.protocol.data_to_send():
            if data:
                self.transport.write(data)
            elif self.transport.can_write_eof():
                self.transport.write_eof()  # the protocol's signal: half-close


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _open(load: Load, part: Part) -> _EchoConnection | None:
    connection = _EchoConnection(load, part)

    async def handshake() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: connection, load.host, load.port)
        await connection.opened

    try:
        await asyncio.wait_for(handshake(), OPEN_TIMEOUT)
    except (OSError, asyncio.TimeoutError) as exc:
        connection.abort(exc)
    return None if connection.failed else connection


async def _window(mark: float, end: float, part: Part) -> None:
    await asyncio.sleep(mark - time.monotonic())
    started = time.process_time()
    await asyncio.sleep(end - time.monotonic())
    part.cpu_s = time.process_time() - started


async def _session(load: Load, connections: int, barrier: threading.Barrier) -> Part:
    part = Part()
    opened = await asyncio.gather(*(_open(load, part) for _ in range(connections)))
    live = [connection for connection in opened if connection is not None]
    # Start the clock in every process at once, after the slowest one has opened its
    # connections. Blocking the event loop here is harmless: no traffic flows yet.
    # A broken barrier (a process failed or is late): measure anyway; its errors say why.
    with suppress(threading.BrokenBarrierError):
        barrier.wait(2 * OPEN_TIMEOUT)
    if not live:
        return part
    # CLOCK_MONOTONIC is one clock for all processes on Linux, so the windows line up.
    mark = time.monotonic() + load.warmup
    end = mark + load.duration
    for connection in live:
        connection.start(mark, end)
    await _window(mark, end, part)
    # One deadline for all connections rather than a timer per message, which would cost
    # the client about as much as the echo itself.
    await asyncio.wait([c.finished for c in live], timeout=max(end + GRACE - time.monotonic(), 0))
    for connection in live:
        connection.abort(asyncio.TimeoutError())  # only the ones still waiting for an echo
        connection.close()
    await asyncio.wait([c.closed for c in live], timeout=CLOSE_TIMEOUT)
    for connection in live:
        if connection.transport is not None:
            connection.transport.abort()  # a server slow to close; no-op for the others
    return part


def _run_loop(coroutine: Coroutine[Any, Any, Part]) -> Part:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    part: Part = uvloop.run(coroutine)
    return part


def _client(
    load: Load, connections: int, barrier: threading.Barrier, results: multiprocessing.Queue[Part]
) -> None:
    try:
        part = _run_loop(_session(load, connections, barrier))
    except Exception as exc:  # report it as an error of this run rather than a silent hang
        barrier.abort()
        part = Part(errors={f"client process failed: {exc!r}": connections})
    results.put(part)


def run(load: Load) -> Result:
    """Run ``load`` against its server and return what was measured.

    Failures of the server (refused handshakes, closed connections, timeouts, wrong echoes)
    are counted in ``Result.errors``, never raised. Raises ValueError when the connections
    cannot be spread over the processes (see spread()).
    """
    counts = spread(load.connections, load.processes)
    # spawn: fresh client interpreters, whatever state (threads, an event loop) the caller has
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(counts))
    results: multiprocessing.Queue[Part] = context.Queue()
    processes = [
        context.Process(target=_client, args=(load, count, barrier, results), daemon=True)
        for count in counts
    ]
    for process in processes:
        process.start()
    deadline = time.monotonic() + load.deadline()
    parts: list[Part] = []
    try:
        while len(parts) < len(processes) and time.monotonic() < deadline:
            running = any(process.is_alive() for process in processes)
            try:
                parts.append(results.get(timeout=0.2))
            except queue.Empty:
                if not running:
                    break  # all gone, and whatever they sent has been read
    finally:
        for process in processes:
            process.join(CLOSE_TIMEOUT)
            if process.is_alive():
                process.kill()
                process.join()
    missing = len(processes) - len(parts)
    if missing:
        parts.append(Part(errors={"client process gave no result (crashed, or hung)": missing}))
    return combine(parts, load.duration)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/ws")
    parser.add_argument("--connections", type=int, default=Load.connections)
    parser.add_argument("--processes", type=int, default=Load.processes)
    parser.add_argument("--duration", type=float, default=Load.duration, help="measured, s")
    parser.add_argument("--warmup", type=float, default=Load.warmup)
    parser.add_argument("--message", choices=sorted(PAYLOADS), default=Load.message)
    parser.add_argument("--deflate", action="store_true", help="offer per-message deflate")
    args = parser.parse_args()
    load = Load(
        args.port, args.host, args.path, args.connections, args.processes, args.duration,
        args.warmup, args.message, args.deflate,
    )  # fmt: skip
    try:
        result = run(load)
    except ValueError as exc:
        parser.error(str(exc))
    line = {
        "uri": load.uri,
        "message": load.label,
        "connections": load.connections,
        "processes": load.processes,
        "seconds": result.seconds,
        "echoes": result.echoes,
        "messages_per_s": round(result.messages_per_s, 1),
        "client_cpu": round(result.client_cpu, 3),
        "errors": result.error_count,
        "error_kinds": result.errors,
    }
    print(json.dumps(line), flush=True)
    sys.exit(0 if result.failure() is None else 1)


if __name__ == "__main__":
    main()
