"""An open-loop HTTP/1.1 load generator: arrivals are fixed in advance, never held back.

Every request's send time is drawn before the run from a seeded RNG (Poisson arrivals:
exponential gaps at a set rate). A request is sent at its time whether or not earlier ones
have been answered (one whose time has passed is sent at once), and its latency is
completion time - *scheduled* time, so a server that stalls is charged for the requests that
piled up behind the stall (no coordinated omission).

Three ways to reach the server:

- ``new``: a new connection per request (``Connection: close``), like a client without a pool.
- ``pool``: like nginx's upstream keep-alive pool (``keepalive 32``): idle connections on a
  LIFO stack of bounded size; a request takes the most recently returned idle connection,
  skipping ones the server has closed meanwhile (nginx watches cached connections for EOF),
  or opens a new one. After the response the connection goes back on the stack, unless the
  response said ``Connection: close`` or the stack is full. A reused connection that fails
  before any byte of the response arrived (the server closed it just then) is retried once on
  a new connection, as nginx does for idempotent requests; that counts as a retry, not an error.
- ``burst``: arrivals come in bursts of simultaneous requests that share one scheduled time,
  each on a new connection; the bursts themselves are Poisson.

    .venv/bin/python -m benchmarks.loadgen --port 8000 --mode pool --rate 100 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Mode = Literal["new", "pool"]
Mix = tuple[tuple[float, float], ...]  # (weight, blocking ms) pairs

#: 90% of requests block their worker for 10 ms, 10% for 200 ms (mean 29 ms).
DEFAULT_MIX: Mix = ((0.9, 10.0), (0.1, 200.0))
POOL_CAPACITY = 32  # nginx's documented example: keepalive 32
TIMEOUT = 30.0
_HEAD_LIMIT = 65536


def mean_service_ms(mix: Mix) -> float:
    """The mean blocking time of ``mix`` in ms."""
    total = sum(weight for weight, _ in mix)
    return sum(weight * ms for weight, ms in mix) / total


@dataclass(frozen=True)
class Arrival:
    """One request, planned before the run."""

    at: float  # seconds after the run's start
    service_ms: float  # blocking work asked of the app
    io_ms: float = 0.0  # awaited I/O asked of the app before the blocking work


def _draw(rng: random.Random, mix: Mix) -> float:
    point = rng.random() * sum(weight for weight, _ in mix)
    for weight, ms in mix:
        point -= weight
        if point < 0:
            return ms
    return mix[-1][1]


def poisson(rate: float, duration: float, mix: Mix, io_ms: float, seed: int) -> list[Arrival]:
    """Poisson arrivals at ``rate`` per second for ``duration`` seconds, services from ``mix``.

    Raises ValueError when rate or duration is not positive.
    """
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be positive")
    rng = random.Random(seed)
    arrivals: list[Arrival] = []
    at = rng.expovariate(rate)
    while at < duration:
        arrivals.append(Arrival(at, _draw(rng, mix), io_ms))
        at += rng.expovariate(rate)
    return arrivals


def bursts(
    burst_rate: float, size: int, duration: float, mix: Mix, io_ms: float, seed: int
) -> list[Arrival]:
    """Bursts of ``size`` simultaneous arrivals; burst times are Poisson at ``burst_rate``/s.

    Raises ValueError when a rate, the size or the duration is not positive.
    """
    if size < 1:
        raise ValueError("a burst needs at least one request")
    starts = poisson(burst_rate, duration, ((1.0, 0.0),), 0.0, seed)
    rng = random.Random(seed + 1)
    return [Arrival(s.at, _draw(rng, mix), io_ms) for s in starts for _ in range(size)]


@dataclass
class Record:
    """What happened to one request (times in seconds, ``*_ms`` in milliseconds)."""

    scheduled: float
    service_ms: float
    io_ms: float
    latency: float | None = None  # completion - scheduled; None when it failed
    lag: float | None = None  # first send - scheduled: how late the generator itself was
    server_ms: float | None = None  # the app's own measure of its blocking work (x-service-ms)
    pid: int | None = None
    status: int | None = None
    error: str | None = None
    closed: bool = False  # the response said Connection: close
    retried: bool = False


class ProtocolError(Exception):
    """The server's response could not be parsed."""


class NoResponse(Exception):
    """The connection ended before any byte of a response arrived."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes
    closes: bool  # the server will not take another request on this connection


async def read_response(reader: asyncio.StreamReader) -> Response:
    """Read one HTTP/1.1 response (head up to the blank line, then the body).

    Raises NoResponse when the connection ends before the first byte, ProtocolError when the
    response is malformed, asyncio.IncompleteReadError when the body is cut short, and
    OSError (ConnectionResetError, ...) from the socket.
    """
    buffer = bytearray()
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        try:
            chunk = await reader.read(_HEAD_LIMIT)
        except ConnectionError as exc:
            if not buffer:
                raise NoResponse(str(exc)) from exc
            raise
        if not chunk:
            if not buffer:
                raise NoResponse("closed before the response")
            raise ProtocolError("closed inside the response head")
        buffer += chunk
        if len(buffer) > _HEAD_LIMIT:
            raise ProtocolError("response head too long")
    status_line, *lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    try:
        status = int(rest[:3])
    except ValueError:
        raise ProtocolError(f"bad status line {status_line!r}") from None
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = bytes(buffer[end + 4 :])
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    length = headers.get("content-length")
    if length is None:  # delimited by the end of the connection
        return Response(status, headers, body + await reader.read(), True)
    try:
        wanted = int(length)
    except ValueError:
        raise ProtocolError(f"bad content-length {length!r}") from None
    if wanted > len(body):
        body += await reader.readexactly(wanted - len(body))
    closes = "close" in tokens or (version == "HTTP/1.0" and "keep-alive" not in tokens)
    return Response(status, headers, body[:wanted], closes)


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def alive(self) -> bool:
        """False once the server closed or reset it (EOF seen, transport closing)."""
        return not (self.reader.at_eof() or self.reader.exception() or self.writer.is_closing())

    def close(self) -> None:
        self.writer.close()


async def _open(host: str, port: int) -> _Connection:
    reader, writer = await asyncio.open_connection(host, port)
    return _Connection(reader, writer)


async def _exchange(connection: _Connection, request: bytes) -> Response:
    connection.writer.write(request)
    return await read_response(connection.reader)


class Pool:
    """An nginx-like upstream keep-alive pool: a bounded LIFO stack of idle connections."""

    def __init__(self, host: str, port: int, capacity: int = POOL_CAPACITY) -> None:
        self.host, self.port, self.capacity = host, port, capacity
        self._idle: list[_Connection] = []

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if connection.alive():
                return connection
            connection.close()  # the server closed it while it sat in the pool
        return None

    def _put_back(self, connection: _Connection, response: Response) -> None:
        if response.closes or len(self._idle) >= self.capacity or not connection.alive():
            connection.close()
        else:
            self._idle.append(connection)

    async def _fresh(self, request: bytes) -> Response:
        connection = await _open(self.host, self.port)
        try:
            response = await _exchange(connection, request)
        except BaseException:
            connection.close()
            raise
        self._put_back(connection, response)
        return response

    async def request(self, request: bytes) -> tuple[Response, bool]:
        """Send ``request`` on a pooled connection; the response and whether it was retried.

        Raises what read_response raises, and OSError when a connection cannot be opened.
        """
        connection = self._take_idle()
        if connection is None:
            return await self._fresh(request), False
        try:
            response = await _exchange(connection, request)
        except NoResponse:
            # The server closed this idle connection as the request went out; nothing of
            # ours was processed, so an idempotent request may go again on a new one.
            connection.close()
            return await self._fresh(request), True
        except BaseException:
            connection.close()
            raise
        self._put_back(connection, response)
        return response, False

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


async def _once(host: str, port: int, request: bytes) -> Response:
    connection = await _open(host, port)
    try:
        return await _exchange(connection, request)
    finally:
        connection.close()


def _request_bytes(host: str, port: int, arrival: Arrival, close: bool) -> bytes:
    target = f"/work?ms={arrival.service_ms:g}&io={arrival.io_ms:g}"
    connection = "Connection: close\r\n" if close else ""
    return (
        f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: asgisup-bench\r\n"
        f"{connection}\r\n"
    ).encode("ascii")


def _error_name(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, NoResponse):
        return "no response"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "body cut short"
    if isinstance(exc, ProtocolError):
        return "bad response"
    return type(exc).__name__


async def generate(
    host: str,
    port: int,
    arrivals: Sequence[Arrival],
    mode: Mode,
    *,
    pool_capacity: int = POOL_CAPACITY,
    timeout: float = TIMEOUT,
) -> list[Record]:
    """Send ``arrivals`` open-loop and return one Record each, in the same order.

    Failures (timeout, connection errors, non-200 answers) are recorded, never raised.
    """
    records = [Record(a.at, a.service_ms, a.io_ms) for a in arrivals]
    pool = Pool(host, port, pool_capacity) if mode == "pool" else None

    async def one(index: int, scheduled: float) -> None:
        record = records[index]
        record.lag = time.perf_counter() - scheduled
        request = _request_bytes(host, port, arrivals[index], close=pool is None)
        try:
            if pool is None:
                response = await asyncio.wait_for(_once(host, port, request), timeout)
            else:
                response, record.retried = await asyncio.wait_for(pool.request(request), timeout)
        except (OSError, asyncio.TimeoutError, NoResponse, ProtocolError) as exc:
            record.error = _error_name(exc)
            return
        record.latency = time.perf_counter() - scheduled
        record.status, record.closed = response.status, response.closes
        if response.status != 200:
            record.error = f"status {response.status}"
            return
        try:
            record.pid = int(json.loads(response.body)["pid"])
            record.server_ms = float(response.headers["x-service-ms"])
        except (ValueError, KeyError, TypeError):
            record.error = "bad response"

    order = sorted(range(len(arrivals)), key=lambda i: arrivals[i].at)
    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter() + 0.05
    for index in order:
        scheduled = start + arrivals[index].at
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, scheduled)))
    await asyncio.gather(*tasks)
    if pool is not None:
        pool.close()
    return records


def run(
    host: str,
    port: int,
    arrivals: Sequence[Arrival],
    mode: Mode,
    *,
    pool_capacity: int = POOL_CAPACITY,
    timeout: float = TIMEOUT,
) -> list[Record]:
    """generate() in a fresh event loop (uvloop when installed)."""
    coroutine = generate(host, port, arrivals, mode, pool_capacity=pool_capacity, timeout=timeout)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    result: list[Record] = uvloop.run(coroutine)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=["new", "pool", "burst"], default="new")
    parser.add_argument("--rate", type=float, default=100.0, help="requests (or bursts) per s")
    parser.add_argument("--burst", type=int, default=20, help="requests per burst")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--io", type=float, default=0.0, help="awaited I/O per request, ms")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.mode == "burst":
        arrivals = bursts(args.rate, args.burst, args.duration, DEFAULT_MIX, args.io, args.seed)
    else:
        arrivals = poisson(args.rate, args.duration, DEFAULT_MIX, args.io, args.seed)
    mode: Mode = "pool" if args.mode == "pool" else "new"
    records = run(args.host, args.port, arrivals, mode)
    done = sorted(r.latency * 1000 for r in records if r.latency is not None and not r.error)
    errors = [r.error for r in records if r.error]
    print(f"{len(records)} requests, {len(errors)} errors {sorted(set(errors))}")
    if done:
        print(f"latency ms: p50 {done[len(done) // 2]:.1f}, max {done[-1]:.1f}")


if __name__ == "__main__":
    main()
