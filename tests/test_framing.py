"""Response framing decisions, without sockets."""

from __future__ import annotations

import pytest

from asgisup.protocols.http import framing
from asgisup.protocols.http.framing import BodyMode, ResponseHeadError


def head(status: int = 200, headers: list[tuple[bytes, bytes]] | None = None, **kw: object):
    args: dict[str, object] = dict(
        head_request=False,
        http_version="1.1",
        keep_alive=True,
        body_length=None,
        default_headers=b"server: asgisup\r\n",
    )
    args.update(kw)
    return framing.response_head(status, headers or [], **args)  # type: ignore[arg-type]


def test_known_length_in_one_message_gets_content_length() -> None:
    data, mode, length, keep = head(body_length=5)
    assert mode is BodyMode.LENGTH and length == 5 and keep
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-length: 5\r\n" in data


def test_streamed_body_is_chunked_on_11_and_close_delimited_on_10() -> None:
    data, mode, _, keep = head()
    assert mode is BodyMode.CHUNKED and b"transfer-encoding: chunked" in data and keep
    data, mode, _, keep = head(http_version="1.0")
    assert mode is BodyMode.UNTIL_CLOSE and not keep and b"connection: close" in data


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(status: int) -> None:
    _, mode, _, _ = head(status)
    assert mode is BodyMode.NONE


def test_head_keeps_declared_length_but_sends_no_body() -> None:
    data, mode, _, _ = head(headers=[(b"content-length", b"10")], head_request=True)
    assert mode is BodyMode.NONE and b"content-length: 10" in data


def test_app_connection_close_is_honoured_and_not_duplicated() -> None:
    data, _, _, keep = head(headers=[(b"Connection", b"close")], body_length=0)
    assert not keep and data.lower().count(b"connection:") == 1


def test_app_server_header_replaces_default() -> None:
    data, *_ = head(headers=[(b"server", b"mine")], body_length=0)
    assert b"server: mine" in data and b"asgisup" not in data


@pytest.mark.parametrize(
    "headers",
    [
        [(b"x", b"a\r\nInjected: 1")],
        [(b"bad name", b"v")],
        [(b"content-length", b"abc")],
        [(b"transfer-encoding", b"gzip")],
    ],
)
def test_invalid_app_headers_are_refused(headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(ResponseHeadError):
        head(headers=headers)


@pytest.mark.parametrize("status", [99, 100, 101, 1000])
def test_invalid_status(status: int) -> None:
    with pytest.raises(ResponseHeadError):
        head(status)


def test_keep_alive_rules() -> None:
    from asgisup.protocols.http.events import RequestHead

    def req(version: str, *conn: bytes) -> RequestHead:
        return RequestHead(b"GET", b"/", version, [(b"connection", c) for c in conn])

    assert framing.request_keep_alive(req("1.1"))
    assert not framing.request_keep_alive(req("1.1", b"Keep-Alive, Close"))
    assert not framing.request_keep_alive(req("1.0"))
    assert framing.request_keep_alive(req("1.0", b"keep-alive"))
    expect = RequestHead(b"POST", b"/", "1.1", [(b"expect", b"100-Continue")])
    assert framing.expects_continue(expect)


def test_simple_response_is_complete() -> None:
    data = framing.simple_response(400)
    head_part, _, body = data.partition(b"\r\n\r\n")
    assert head_part.startswith(b"HTTP/1.1 400 Bad Request")
    assert b"content-length: %d" % len(body) in head_part and b"connection: close" in head_part
