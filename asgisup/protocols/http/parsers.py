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
    UPGRADE,
    Body,
    Event,
    Headers,
    ProtocolError,
    RequestHead,
)
from asgisup.protocols.http.framing import check_transfer_codings, request_keep_alive

# Request line plus header section. h11's own limit has the same meaning
# (max_incomplete_event_size); httptools has none, so it is counted below.
MAX_HEAD_SIZE = 64 * 1024


class Parser(Protocol):
    def feed(self, data: bytes) -> list[Event]:
        """Parse ``data``; raises ProtocolError when the client broke HTTP/1.1.

        After a request that asks to switch protocols the parser emits ``UPGRADE`` and stops:
        what follows, in this call and later ones, is kept for :meth:`take_rest`.
        """
        ...

    def take_rest(self) -> bytes:
        """The bytes fed after an upgrade request; the parser starts afresh after them."""
        ...


class H11Parser:
    """h11 used as a parser only: responses are framed by our own code for both parsers.

    h11 expects to see the response before it parses the next pipelined request, so after
    each request a fresh h11 connection takes over the unparsed bytes (``trailing_data``).
    """

    __slots__ = ("_conn", "_done", "_head", "_last", "_max_head", "_rest")

    def __init__(self, max_head_size: int = MAX_HEAD_SIZE) -> None:
        self._max_head = max_head_size
        self._conn = self._new()
        self._done = False
        self._rest: bytearray | None = None  # after an upgrade request: what came next
        self._head: bytearray | None = bytearray()  # raw bytes of the head being received
        self._last: RequestHead | None = None  # the latest request's head (maybe fed earlier)

    def _next_request(self) -> None:
        """A fresh h11 connection for the next request, fed what followed the last one."""
        rest, _ = self._conn.trailing_data
        self._conn = self._new()
        self._head = bytearray(rest)
        if rest:
            self._conn.receive_data(rest)

    def _new(self) -> h11.Connection:
        return h11.Connection(h11.SERVER, max_incomplete_event_size=self._max_head)

    def take_rest(self) -> bytes:
        rest = bytes(self._rest or b"")
        self._rest = None
        self._conn = self._new()
        self._head = bytearray()
        return rest

    def feed(self, data: bytes) -> list[Event]:
        if self._done:
            return []
        if self._rest is not None:
            self._rest += data
            return []
        if self._head is not None and len(self._head) <= self._max_head:
            self._head += data
        self._conn.receive_data(data)
        events: list[Event] = []
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                if exc.error_status_hint == 501 and self._head is not None:
                    # h11 refuses every coding but chunked alone; judge them as for llhttp.
                    check_transfer_codings(_raw_field(self._head, b"transfer-encoding"))
                raise ProtocolError(exc.error_status_hint, str(exc)) from None
            if event is h11.NEED_DATA:
                return events
            if event is h11.PAUSED:
                if self._conn.their_state is h11.MIGHT_SWITCH_PROTOCOL:  # type: ignore[attr-defined]
                    self._rest = bytearray(self._conn.trailing_data[0])
                    events.append(UPGRADE)
                    return events
                self._next_request()
            elif isinstance(event, h11.Request):
                headers = _strict_headers(self._head or b"", list(event.headers))
                self._head = None
                # h11 checks its limit only while the head is incomplete; count it the same
                # way as for httptools so both parsers draw the line at the same size.
                size = len(event.target) + sum(len(n) + len(v) + 4 for n, v in headers)
                if size > self._max_head:
                    raise ProtocolError(431, "request head too large")
                self._last = RequestHead(
                    method=event.method,
                    target=event.target,
                    http_version=event.http_version.decode("ascii"),
                    headers=headers,
                )
                events.append(self._last)
            elif isinstance(event, h11.Data):
                events.append(Body(bytes(event.data)))
            elif isinstance(event, h11.EndOfMessage):
                events.append(END_OF_REQUEST)
                if self._conn.their_state is h11.MUST_CLOSE:
                    # h11 never keeps HTTP/1.0 alive; the shared rule decides for both parsers.
                    assert self._last is not None  # h11 ends no message it did not begin
                    if not request_keep_alive(self._last):
                        self._done = True  # the client's last request: nothing more is parsed
                        return events
                    self._next_request()
            else:  # pragma: no cover - ConnectionClosed needs receive_data(b""), never fed
                return events


def _strict_headers(raw: bytes | bytearray, headers: Headers) -> Headers:
    """Hold h11 to llhttp's strictness, from the raw bytes of the head.

    h11 accepts a bare LF as a line end and obsolete line folding, and merges repeated or
    listed Content-Length values into one; llhttp refuses all of these. Here they are refused
    too (400), and the raw Content-Length fields replace h11's merged one so that
    ``framing.validate_head`` judges the same values for both parsers.
    """
    end = raw.find(b"\r\n\r\n")
    head = bytes(raw[: end + 2] if end >= 0 else raw)
    if head.count(b"\n") != head.count(b"\r\n"):
        raise ProtocolError(400, "bare LF in the request head")
    if b"\r\n " in head or b"\r\n\t" in head:
        raise ProtocolError(400, "obsolete line folding")
    lengths = _raw_field(head, b"content-length")
    if not lengths:
        return headers
    return [(n, v) for n, v in headers if n != b"content-length"] + [
        (b"content-length", value) for value in lengths
    ]


def _raw_field(head: bytes | bytearray, name: bytes) -> list[bytes]:
    """The values of field ``name`` (lowercase) in a raw head, comma-separated parts split."""
    prefix = name + b":"
    return [
        part.strip(b" \t").lower()
        for line in bytes(head).split(b"\r\n")
        if line[: len(prefix)].lower() == prefix
        for part in line[len(prefix) :].split(b",")
    ]


class HttptoolsParser:
    """llhttp through httptools: callbacks collect events during ``feed_data``."""

    __slots__ = (
        "_done",
        "_events",
        "_head_size",
        "_headers",
        "_max_head",
        "_parser",
        "_rest",
        "_too_large",
        "_url",
    )

    def __init__(self, max_head_size: int = MAX_HEAD_SIZE) -> None:
        import httptools

        self._max_head = max_head_size
        self._parser = httptools.HttpRequestParser(self)
        self._events: list[Event] = []
        self._headers: Headers = []
        self._url = b""
        self._head_size = 0
        self._too_large = False
        self._done = False
        self._rest: bytearray | None = None  # after an upgrade request: what came next

    def _head_too_large(self) -> None:
        self._too_large = True
        # Raising stops llhttp at once; feed() turns it into a 431.
        raise ProtocolError(431, "request head too large")

    # llhttp callbacks (the size count is spelled out in each: they run for every field).
    # No on_message_begin: on_headers_complete starts the next head afresh, one callback less.
    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        if self._head_size > self._max_head:
            self._head_too_large()
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self._max_head:
            self._head_too_large()
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        self._events.append(
            RequestHead(parser.get_method(), self._url, parser.get_http_version(), self._headers)
        )
        self._headers = []
        self._url = b""
        self._head_size = 0

    def on_body(self, body: bytes) -> None:
        self._events.append(Body(body))

    def on_message_complete(self) -> None:
        self._events.append(END_OF_REQUEST)
        # llhttp applies the rule of framing.request_keep_alive (tested to agree).
        if not self._parser.should_keep_alive():
            self._done = True  # llhttp refuses bytes after the last request; we ignore them

    def take_rest(self) -> bytes:
        import httptools

        rest = bytes(self._rest or b"")
        self._rest = None
        self._parser = httptools.HttpRequestParser(self)
        return rest

    def feed(self, data: bytes) -> list[Event]:
        import httptools

        if self._done:
            return []
        if self._rest is not None:
            self._rest += data
            return []
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # llhttp stops after a request that asks to switch protocols (Connection: upgrade
            # with an Upgrade field, or CONNECT): the connection decides what comes next.
            self._rest = bytearray(data[exc.args[0] :])
            self._events.append(UPGRADE)
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
