"""Two request parsers behind one interface: ``feed(bytes) -> list[Event]``.

Each parser only turns bytes into :mod:`events`; every decision above that (validation that
must be identical for both, keep-alive, the ASGI cycle, response framing) is written once in
``framing`` and ``connection``. A parser parses everything it is fed, pipelined requests
included; the connection decides how much to feed it.
"""

from __future__ import annotations

from typing import Protocol

import h11

from asgisup.protocols.http.events import (
    END_OF_REQUEST,
    Body,
    Event,
    Headers,
    ProtocolError,
    RequestHead,
)
from asgisup.protocols.http.framing import request_keep_alive

# Request line plus header section. h11's own limit has the same meaning
# (max_incomplete_event_size); httptools has none, so it is counted below.
MAX_HEAD_SIZE = 64 * 1024


class Parser(Protocol):
    def feed(self, data: bytes) -> list[Event]:
        """Parse ``data``; raises ProtocolError when the client broke HTTP/1.1."""
        ...


class H11Parser:
    """h11 used as a parser only: responses are framed by our own code for both parsers.

    h11 expects to see the response before it parses the next pipelined request, so after
    each request a fresh h11 connection takes over the unparsed bytes (``trailing_data``).
    """

    __slots__ = ("_conn", "_done")

    def __init__(self) -> None:
        self._conn = self._new()
        self._done = False

    @staticmethod
    def _new() -> h11.Connection:
        return h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_SIZE)

    def feed(self, data: bytes) -> list[Event]:
        if self._done:
            return []
        self._conn.receive_data(data)
        events: list[Event] = []
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise ProtocolError(exc.error_status_hint, str(exc)) from None
            if event is h11.NEED_DATA:
                return events
            if event is h11.PAUSED:
                rest, _ = self._conn.trailing_data
                self._conn = self._new()
                if not rest:
                    return events
                self._conn.receive_data(rest)
            elif isinstance(event, h11.Request):
                headers = list(event.headers)
                # h11 checks its limit only while the head is incomplete; count it the same
                # way as for httptools so both parsers draw the line at the same size.
                size = len(event.target) + sum(len(n) + len(v) + 4 for n, v in headers)
                if size > MAX_HEAD_SIZE:
                    raise ProtocolError(431, "request head too large")
                events.append(
                    RequestHead(
                        method=event.method,
                        target=event.target,
                        http_version=event.http_version.decode("ascii"),
                        headers=headers,
                    )
                )
            elif isinstance(event, h11.Data):
                events.append(Body(bytes(event.data)))
            elif isinstance(event, h11.EndOfMessage):
                events.append(END_OF_REQUEST)
                if self._conn.their_state is h11.MUST_CLOSE:
                    # h11 never keeps HTTP/1.0 alive; the shared rule decides for both parsers.
                    head = next(e for e in reversed(events) if isinstance(e, RequestHead))
                    if not request_keep_alive(head):
                        self._done = True  # the client's last request: nothing more is parsed
                        return events
                    rest, _ = self._conn.trailing_data
                    self._conn = self._new()
                    if rest:
                        self._conn.receive_data(rest)
            else:  # pragma: no cover - ConnectionClosed needs receive_data(b""), never fed
                return events


class HttptoolsParser:
    """llhttp through httptools: callbacks collect events during ``feed_data``."""

    __slots__ = (
        "_done",
        "_events",
        "_head",
        "_head_size",
        "_headers",
        "_parser",
        "_too_large",
        "_url",
    )

    def __init__(self) -> None:
        import httptools

        self._parser = httptools.HttpRequestParser(self)
        self._events: list[Event] = []
        self._headers: Headers = []
        self._url = b""
        self._head_size = 0
        self._too_large = False
        self._done = False
        self._head = RequestHead(b"", b"", "1.1", [])

    def _grow_head(self, size: int) -> None:
        self._head_size += size
        if self._head_size > MAX_HEAD_SIZE:
            self._too_large = True
            # Raising stops llhttp at once; feed() turns it into a 431.
            raise ProtocolError(431, "request head too large")

    # llhttp callbacks
    def on_message_begin(self) -> None:
        self._headers = []
        self._url = b""
        self._head_size = 0

    def on_url(self, url: bytes) -> None:
        self._grow_head(len(url))
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._grow_head(len(name) + len(value) + 4)
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._head = RequestHead(
            method=self._parser.get_method(),
            target=self._url,
            http_version=self._parser.get_http_version(),
            headers=self._headers,
        )
        self._events.append(self._head)

    def on_body(self, body: bytes) -> None:
        self._events.append(Body(body))

    def on_message_complete(self) -> None:
        self._events.append(END_OF_REQUEST)
        if not request_keep_alive(self._head):
            self._done = True  # llhttp refuses bytes after the last request; we ignore them

    def feed(self, data: bytes) -> list[Event]:
        import httptools

        if self._done:
            return []
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # llhttp stops after a request that asks to switch protocols; the bytes after it
            # are a new request as far as this server is concerned (no upgrade is supported).
            offset = exc.args[0]
            self._parser = httptools.HttpRequestParser(self)
            if offset < len(data):
                return self._take() + self.feed(data[offset:])
        except httptools.HttpParserError as exc:
            if self._done:
                return self._take()
            if self._too_large:
                raise ProtocolError(431, "request head too large") from None
            raise ProtocolError(400, str(exc) or type(exc).__name__) from None
        return self._take()

    def _take(self) -> list[Event]:
        events, self._events = self._events, []
        return events


def parser_factory(name: str) -> type[H11Parser] | type[HttptoolsParser]:
    """The parser class for ``--http`` ``name`` (auto: httptools when installed).

    Raises ImportError when httptools is asked for explicitly and is not installed.
    """
    if name == "h11":
        return H11Parser
    if name == "httptools":
        import httptools

        return HttptoolsParser
    try:
        import httptools  # noqa: F401
    except ImportError:
        return H11Parser
    return HttptoolsParser
