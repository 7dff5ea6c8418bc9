"""HTTP/1.1 framing decisions, written once for both parsers. Plain values in, bytes out.

References are to RFC 9110 (semantics) and RFC 9112 (HTTP/1.1 message syntax).
"""

from __future__ import annotations

import enum
import http
import re
from collections.abc import Iterable
from email.utils import formatdate
from urllib.parse import unquote, urlsplit

from asgisup.protocols.http.events import ProtocolError, RequestHead

# RFC 9110 §5.6.2 token, for header names an app sends.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
# Field values must not carry CR, LF or NUL (RFC 9110 §5.5): they would split the response.
_BAD_VALUE = re.compile(rb"[\x00\r\n]")

_REASONS = {status.value: status.phrase.encode("ascii") for status in http.HTTPStatus}


class BodyMode(enum.Enum):
    NONE = "none"  # HEAD, 1xx, 204, 304: no body whatever the headers say (RFC 9110 §6.4.1)
    LENGTH = "length"
    CHUNKED = "chunked"
    UNTIL_CLOSE = "until-close"  # HTTP/1.0 client, no Content-Length: the close delimits it


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """Split a request target into (raw path, query string) (RFC 9112 §3.2).

    Origin form ``/a?b`` is the common case; absolute form ``http://h/a?b`` is what a proxy
    sends; asterisk form ``*`` is only for OPTIONS. Raises ProtocolError for anything else.
    """
    if target.startswith(b"/"):
        path, _, query = target.partition(b"?")
        return path, query
    if target == b"*":
        return target, b""
    if b"://" in target:
        parts = urlsplit(target)
        return parts.path or b"/", parts.query
    raise ProtocolError(400, "invalid request target")


def decode_path(raw_path: bytes) -> str:
    """The ASGI ``path``: percent-decoded, then UTF-8 decoded (lossless via surrogateescape)."""
    return unquote(raw_path.decode("ascii", "surrogateescape"), errors="surrogateescape")


# Longer than this many digits, a Content-Length is no size any client sends (and the
# request could never be received); refusing it keeps every parser away from overflow.
_MAX_LENGTH_DIGITS = 18


def validate_head(head: RequestHead, max_headers: int = 100) -> tuple[bool, bool, bool]:
    """Checks both parsers must make identically; raises ProtocolError. Returns, from the
    same pass over the headers, whether the client allows keep-alive (RFC 9112 §9.3),
    whether it waits for ``100 Continue`` (RFC 9110 §10.1.1), and whether Connection has the
    ``upgrade`` token (so only then is the request looked at as a WebSocket handshake).

    - HTTP/1.0 and HTTP/1.1 only: another version gets 505 (RFC 9110 §15.6.6); HTTP/0.9's
      version-less request line gets 400.
    - More than ``max_headers`` header fields: 431 (RFC 6585 §5).
    - HTTP/1.1 requires exactly one Host field (RFC 9112 §3.2).
    - Content-Length must be one field of digits (RFC 9112 §6.3: an invalid or repeated one is
      unrecoverable framing); together with Transfer-Encoding it is a request-smuggling vector
      (RFC 9112 §6.1, §11.2): refuse it rather than pick one.
    - Transfer-Encoding only on HTTP/1.1, with ``chunked`` exactly once and last (RFC 9112
      §6.1, §6.3): otherwise 400; another coding before it is not implemented: 501.
    """
    if head.http_version not in ("1.1", "1.0"):
        if head.http_version in ("0.9", "0.0"):
            raise ProtocolError(400, "no HTTP version in the request line")
        raise ProtocolError(505, f"HTTP/{head.http_version} is not supported")
    if len(head.headers) > max_headers:
        raise ProtocolError(431, f"more than {max_headers} header fields")
    hosts = 0
    lengths: list[bytes] = []
    codings: list[bytes] = []
    http11 = head.http_version == "1.1"
    keep_alive = http11
    expect_continue = upgrade = False
    for name, value in head.headers:
        if name == b"host":
            hosts += 1
        elif name == b"content-length":
            lengths.append(value)
        elif name == b"transfer-encoding":
            codings.extend(part.strip().lower() for part in value.split(b","))
        elif name == b"connection":
            if http11:
                keep_alive = keep_alive and not has_token(value, b"close")
            elif has_token(value, b"keep-alive"):
                keep_alive = True
            upgrade = upgrade or has_token(value, b"upgrade")
        elif name == b"expect":
            expect_continue = expect_continue or (http11 and value.lower() == b"100-continue")
    if http11 and hosts != 1:
        raise ProtocolError(400, "missing Host header" if hosts == 0 else "duplicate Host header")
    if lengths:
        if codings:
            raise ProtocolError(400, "both Content-Length and Transfer-Encoding")
        if len(lengths) > 1:
            raise ProtocolError(400, "more than one Content-Length")
        value = lengths[0].strip(b" \t")
        if not value.isdigit() or len(value) > _MAX_LENGTH_DIGITS:
            raise ProtocolError(400, "invalid Content-Length")
    if codings:
        if head.http_version == "1.0":
            raise ProtocolError(400, "Transfer-Encoding in an HTTP/1.0 request")
        check_transfer_codings(codings)
    return keep_alive, expect_continue, upgrade


def check_transfer_codings(codings: list[bytes]) -> None:
    """``chunked`` exactly once and last, else 400; any other coding: 501 (RFC 9112 §6.1)."""
    if not codings or codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
        raise ProtocolError(400, "Transfer-Encoding must end with chunked, once")
    if len(codings) > 1:
        raise ProtocolError(501, "transfer coding not implemented")


def valid_field(name: bytes, value: bytes) -> bool:
    """Whether a response header field may be sent as is: a token name, no CR, LF or NUL."""
    return _TOKEN.match(name) is not None and _BAD_VALUE.search(value) is None


def has_token(value: bytes, token: bytes) -> bool:
    """Whether the comma-separated list ``value`` has ``token`` (lower case), any case."""
    lowered = value.lower()
    if lowered == token:
        return True  # a single token, the common case: no splitting
    if token not in lowered:
        return False
    return any(part.strip() == token for part in lowered.split(b","))


def request_keep_alive(head: RequestHead) -> bool:
    """Whether the client allows the connection to be reused (RFC 9112 §9.3)."""
    connection = [value for name, value in head.headers if name == b"connection"]
    if head.http_version == "1.0":
        return any(has_token(value, b"keep-alive") for value in connection)
    return not any(has_token(value, b"close") for value in connection)


def expects_continue(head: RequestHead) -> bool:
    """Whether the client waits for ``100 Continue`` before sending the body (RFC 9110 §10.1.1)."""
    return head.http_version == "1.1" and any(
        name == b"expect" and value.lower() == b"100-continue" for name, value in head.headers
    )


def date_line(now: float) -> bytes:
    """The ``date`` header line for the time ``now`` (seconds since the epoch)."""
    return b"date: " + formatdate(now, usegmt=True).encode("ascii") + b"\r\n"


class ResponseHeadError(Exception):
    """The app sent a response start this server cannot put on the wire."""


def response_head(
    status: int,
    headers: Iterable[tuple[bytes, bytes]],
    *,
    head_request: bool,
    http_version: str,
    keep_alive: bool,
    body_length: int | None,
    default_headers: bytes,
) -> tuple[bytes, BodyMode, int, bool]:
    """Serialize a response head and decide how its body is framed.

    ``body_length`` is the length of the whole body when it is already known (the app sent
    it in one message) and no Content-Length was given. ``default_headers`` are complete
    header lines (server, date) added unless the app sent a field of the same name.

    Returns (head bytes, body mode, declared length, keep-alive). Raises ResponseHeadError
    for an invalid status or header.

    This runs for every response: names already seen are looked up rather than checked again,
    and lines are joined once at the end.
    """
    if not 100 <= status <= 999 or 100 <= status < 200:
        # 1xx interim responses are the server's business (100 Continue), not the app's.
        raise ResponseHeadError(f"invalid status code {status!r}")
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))]
    length: int | None = None
    chunked = False
    seen_server = seen_date = False
    for name, value in headers:
        try:
            lname = _NAMES[name]
        except (KeyError, TypeError):
            lname = field_name(name)
        if _BAD_VALUE.search(value) is not None:
            raise ResponseHeadError(f"invalid header {name!r}: {value!r}")
        if lname in _ACTED_ON:
            if lname == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise ResponseHeadError(f"invalid content-length {value!r}") from None
                if length < 0:
                    raise ResponseHeadError(f"invalid content-length {value!r}")
            elif lname == b"transfer-encoding":
                chunked = has_token(value, b"chunked")
                if not chunked:
                    raise ResponseHeadError(f"unsupported transfer-encoding {value!r}")
            elif lname == b"connection":
                if has_token(value, b"close"):
                    keep_alive = False
                continue  # hop-by-hop: this server owns the connection header
            elif lname == b"server":
                seen_server = True
            else:
                seen_date = True
        parts += (name, b": ", value, b"\r\n")

    if head_request or status in (204, 304):
        mode = BodyMode.NONE
        if status == 204 and length is not None:
            raise ResponseHeadError("a 204 response must not have a content-length")
    elif chunked:
        mode = BodyMode.CHUNKED
    elif length is not None:
        mode = BodyMode.LENGTH
    elif body_length is not None:
        length = body_length
        mode = BodyMode.LENGTH
        parts.append(b"content-length: %d\r\n" % length)
    elif http_version == "1.1":
        mode = BodyMode.CHUNKED
        parts.append(b"transfer-encoding: chunked\r\n")
    else:
        mode = BodyMode.UNTIL_CLOSE
        keep_alive = False

    parts.append(server_defaults(default_headers, seen_server=seen_server, seen_date=seen_date))
    if not keep_alive:
        parts.append(b"connection: close\r\n\r\n")
    elif http_version == "1.0":
        parts.append(b"connection: keep-alive\r\n\r\n")
    else:
        parts.append(b"\r\n")
    return b"".join(parts), mode, length or 0, keep_alive


# Response fields response_head() acts on (lower-cased names).
_ACTED_ON = frozenset((b"content-length", b"transfer-encoding", b"connection", b"server", b"date"))
# Field names apps have sent that are tokens, each mapped to its lower case. Apps send the same
# few names over and over; the cache stops growing at _MAX_NAMES (a new name is checked anyway).
_NAMES: dict[bytes, bytes] = {}
_MAX_NAMES = 512


def field_name(name: bytes) -> bytes:
    """The lower case of a response field ``name``; raises ResponseHeadError if it is not a
    token (RFC 9110 §5.6.2) or not bytes."""
    if not isinstance(name, (bytes, bytearray)) or _TOKEN.match(name) is None:
        raise ResponseHeadError(f"invalid header name {name!r}")
    name = bytes(name)
    lname = name.lower()
    if len(_NAMES) < _MAX_NAMES:
        _NAMES[name] = lname
    return lname


def server_defaults(default_headers: bytes, *, seen_server: bool, seen_date: bool) -> bytes:
    """The server's default header lines less those the app sent itself."""
    if not (seen_server or seen_date):
        return default_headers
    return b"".join(
        line
        for line in default_headers.splitlines(keepends=True)
        if not (
            (seen_server and line.startswith(b"server:"))
            or (seen_date and line.startswith(b"date:"))
        )
    )


def reason(status: int) -> str:
    """The reason phrase of ``status`` ("" for codes without one)."""
    return _REASONS.get(status, b"").decode("ascii")


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (RFC 9112 §7.1); empty data is skipped by callers."""
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"


def simple_response(status: int, *, default_headers: bytes = b"") -> bytes:
    """A complete response the server sends on its own (errors): plain text, then close."""
    body = b"%d %s\n" % (status, _REASONS.get(status, b""))
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: %d\r\n%sconnection: close\r\n\r\n%s"
        % (status, _REASONS.get(status, b""), len(body), default_headers, body)
    )


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
