"""Both parsers produce the same events for the same bytes, however the bytes are chunked."""

from __future__ import annotations

import pytest

from asgisup.protocols.http import framing
from asgisup.protocols.http.events import Body, EndOfRequest, ProtocolError, RequestHead, Upgrade
from asgisup.protocols.http.parsers import MAX_HEAD_SIZE, H11Parser, HttptoolsParser, parser_factory

PARSERS = [H11Parser, HttptoolsParser]


def parse(parser_cls: type, data: bytes, chunk: int | None = None) -> list[object]:
    parser = parser_cls()
    if chunk is None:
        events = parser.feed(data)
    else:
        events = []
        for i in range(0, len(data), chunk):
            events += parser.feed(data[i : i + chunk])
    # Chunking may split one body into several Body events: merge them to compare.
    merged: list[object] = []
    for event in events:
        if isinstance(event, Body) and merged and isinstance(merged[-1], Body):
            merged[-1] = Body(merged[-1].data + event.data)
        elif not (isinstance(event, Body) and not event.data):
            merged.append(event)
    return merged


GET = b"GET /a%20b?x=1&y=%2F HTTP/1.1\r\nHost: example\r\nX-Thing: A\r\n\r\n"
POST_LENGTH = b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
POST_CHUNKED = (
    b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
)


@pytest.mark.parametrize("parser_cls", PARSERS)
@pytest.mark.parametrize("chunk", [None, 1, 2, 7])
def test_get(parser_cls: type, chunk: int | None) -> None:
    events = parse(parser_cls, GET, chunk)
    assert events == [
        RequestHead(
            b"GET", b"/a%20b?x=1&y=%2F", "1.1", [(b"host", b"example"), (b"x-thing", b"A")]
        ),
        EndOfRequest(),
    ]


@pytest.mark.parametrize("parser_cls", PARSERS)
@pytest.mark.parametrize("chunk", [None, 1, 3])
@pytest.mark.parametrize(
    ("request_bytes", "body"), [(POST_LENGTH, b"hello"), (POST_CHUNKED, b"abcde")]
)
def test_bodies(parser_cls: type, chunk: int | None, request_bytes: bytes, body: bytes) -> None:
    events = parse(parser_cls, request_bytes, chunk)
    assert isinstance(events[0], RequestHead)
    assert events[1:] == [Body(body), EndOfRequest()]


@pytest.mark.parametrize("parser_cls", PARSERS)
def test_pipelined_requests_are_all_parsed(parser_cls: type) -> None:
    events = parse(parser_cls, GET + POST_LENGTH + GET)
    heads = [e for e in events if isinstance(e, RequestHead)]
    assert [h.method for h in heads] == [b"GET", b"POST", b"GET"]
    assert sum(isinstance(e, EndOfRequest) for e in events) == 3


@pytest.mark.parametrize("parser_cls", PARSERS)
def test_nothing_parsed_after_the_last_request(parser_cls: type) -> None:
    last = b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    events = parse(parser_cls, last + GET)
    assert [type(e) for e in events] == [RequestHead, EndOfRequest]


@pytest.mark.parametrize("parser_cls", PARSERS)
def test_http10(parser_cls: type) -> None:
    events = parse(parser_cls, b"GET / HTTP/1.0\r\n\r\n")
    head = events[0]
    assert isinstance(head, RequestHead) and head.http_version == "1.0"
    assert not framing.request_keep_alive(head)


@pytest.mark.parametrize("parser_cls", PARSERS)
@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: h\r\nBad Header: x\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_malformed_is_400(parser_cls: type, garbage: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        parse(parser_cls, garbage)
    assert info.value.status == 400


@pytest.mark.parametrize("parser_cls", PARSERS)
def test_oversized_head_is_431(parser_cls: type) -> None:
    big = b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * (MAX_HEAD_SIZE + 10) + b"\r\n\r\n"
    with pytest.raises(ProtocolError) as info:
        parse(parser_cls, big, chunk=4096)
    assert info.value.status == 431


@pytest.mark.parametrize("parser_cls", PARSERS)
@pytest.mark.parametrize("chunk", [None, 1])
def test_upgrade_request_stops_the_parser(parser_cls: type, chunk: int | None) -> None:
    upgrade = b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    parser = parser_cls()
    data = upgrade + b"\x81\x82frame"
    step = chunk or len(data)
    events = [e for i in range(0, len(data), step) for e in parser.feed(data[i : i + step])]
    assert [type(e) for e in events] == [RequestHead, EndOfRequest, Upgrade]
    assert parser.feed(b" and more") == []  # kept, not parsed
    assert parser.take_rest() == b"\x81\x82frame and more"
    # Not taken (another protocol, or --ws none): HTTP/1.1 goes on after it.
    assert [type(e) for e in parser.feed(GET)] == [RequestHead, EndOfRequest]


def test_validate_head_rules() -> None:
    ok = RequestHead(b"GET", b"/", "1.1", [(b"host", b"h")])
    framing.validate_head(ok)
    for headers, reason in [
        ([], "missing Host"),
        ([(b"host", b"a"), (b"host", b"b")], "duplicate Host"),
        ([(b"host", b"a"), (b"content-length", b"1"), (b"transfer-encoding", b"chunked")], "both"),
    ]:
        with pytest.raises(ProtocolError, match=reason):
            framing.validate_head(RequestHead(b"GET", b"/", "1.1", headers))
    framing.validate_head(RequestHead(b"GET", b"/", "1.0", []))  # HTTP/1.0 needs no Host


def test_split_target_forms() -> None:
    assert framing.split_target(b"/p?q=1") == (b"/p", b"q=1")
    assert framing.split_target(b"*") == (b"*", b"")
    assert framing.split_target(b"http://h:1/p?q") == (b"/p", b"q")
    with pytest.raises(ProtocolError):
        framing.split_target(b"p")
    assert framing.decode_path(b"/a%20b/%E2%82%AC") == "/a b/\u20ac"


def test_parser_factory_names() -> None:
    assert parser_factory("h11") is H11Parser
    assert parser_factory("httptools") is HttptoolsParser
    assert parser_factory("auto") is HttptoolsParser


@pytest.mark.parametrize("version", ["1.0", "1.1"])
@pytest.mark.parametrize(
    "fields",
    [
        [],
        [(b"connection", b"close")],
        [(b"connection", b"keep-alive")],
        [(b"connection", b"Upgrade, Keep-Alive")],
        [(b"connection", b"keep-alive"), (b"connection", b"close")],
        [(b"expect", b"100-continue")],
        [(b"expect", b"100-Continue"), (b"expect", b"other")],
        [(b"connection", b"Upgrade"), (b"upgrade", b"websocket")],
        [(b"connection", b"keep-alive, upgrade")],
        [(b"connection", b"upgraded")],
    ],
)
def test_validate_head_flags_match_the_separate_rules(
    version: str, fields: list[tuple[bytes, bytes]]
) -> None:
    head = RequestHead(b"GET", b"/", version, [(b"host", b"h"), *fields])
    assert framing.validate_head(head) == (
        framing.request_keep_alive(head),
        framing.expects_continue(head),
        any(
            name == b"connection" and framing.has_token(value, b"upgrade") for name, value in fields
        ),
    )


@pytest.mark.parametrize(
    "connection",
    [None, b"close", b"keep-alive", b"Keep-Alive", b"foo, close", b"close, foo", b"closed",
     b"keep-alive, upgrade", b"CLOSE"],
)  # fmt: skip
@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_llhttp_keep_alive_agrees_with_the_shared_rule(
    connection: bytes | None, version: str
) -> None:
    """HttptoolsParser stops after the last request by llhttp's should_keep_alive()."""
    import httptools

    fields = b"Host: h\r\n" + (b"Connection: " + connection + b"\r\n" if connection else b"")
    data = b"GET / HTTP/" + version.encode() + b"\r\n" + fields + b"\r\n"
    seen: list[bool] = []

    class Callbacks:
        def on_message_complete(self) -> None:
            seen.append(parser.should_keep_alive())  # as HttptoolsParser asks it

    parser = httptools.HttpRequestParser(Callbacks())
    parser.feed_data(data)
    headers = [(b"host", b"h")] + ([(b"connection", connection)] if connection else [])
    assert seen == [framing.request_keep_alive(RequestHead(b"GET", b"/", version, headers))]
