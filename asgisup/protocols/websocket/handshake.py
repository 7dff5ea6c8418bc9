"""The WebSocket opening handshake (RFC 6455 §4.2), written once for both engines.

The HTTP connection has already parsed the request head; here it is judged and the
``101 Switching Protocols`` response is written. Extension negotiation belongs to the engine
(its frames carry the extension), so the engine supplies that one header's value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from asgisup.protocols.http.events import Headers, ProtocolError, RequestHead
from asgisup.protocols.http.framing import (
    ResponseHeadError,
    has_token,
    server_defaults,
    valid_field,
)

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_VERSION = b"13"
# Header fields of the 101 response that belong to the handshake, not to the app.
_OWN_FIELDS = frozenset(
    {b"upgrade", b"connection", b"sec-websocket-accept", b"sec-websocket-extensions"}
)


def is_websocket_request(head: RequestHead) -> bool:
    """Whether ``head`` asks to switch to WebSocket: ``Upgrade: websocket`` together with
    the ``upgrade`` token in Connection (both are needed; RFC 6455 §4.2.1)."""
    upgrade = connection = False
    for name, value in head.headers:
        if name == b"upgrade":
            upgrade = upgrade or has_token(value, b"websocket")
        elif name == b"connection":
            connection = connection or has_token(value, b"upgrade")
    return upgrade and connection


@dataclass(slots=True)
class Handshake:
    key: bytes
    subprotocols: list[str]  # offered by the client, in its order of preference
    extensions: list[bytes]  # Sec-WebSocket-Extensions offers, one per comma-separated item


def check(head: RequestHead) -> Handshake:
    """Judge a WebSocket handshake request. Raises ProtocolError with the status to answer:
    400 for a malformed one, 426 (with the supported version) for another protocol version."""
    if head.method != b"GET":
        raise ProtocolError(400, "a WebSocket handshake must be a GET request")
    if head.http_version != "1.1":
        raise ProtocolError(400, "a WebSocket handshake needs HTTP/1.1")
    key = b""
    version = b""
    subprotocols: list[str] = []
    extensions: list[bytes] = []
    for name, value in head.headers:
        if name == b"sec-websocket-key":
            key = value.strip()
        elif name == b"sec-websocket-version":
            version = value.strip()
        elif name == b"sec-websocket-protocol":
            subprotocols += [p.strip().decode("latin-1") for p in value.split(b",") if p.strip()]
        elif name == b"sec-websocket-extensions":
            extensions += [e.strip() for e in value.split(b",") if e.strip()]
        elif name in (b"content-length", b"transfer-encoding") and value.strip() != b"0":
            raise ProtocolError(400, "a WebSocket handshake must not have a body")
    if version != _VERSION:
        raise ProtocolError(
            426, "unsupported WebSocket version", headers=b"sec-websocket-version: 13\r\n"
        )
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError
    except (binascii.Error, ValueError):
        raise ProtocolError(400, "invalid Sec-WebSocket-Key") from None
    return Handshake(key, subprotocols, extensions)


def accept_token(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def accept_response(
    handshake: Handshake,
    *,
    subprotocol: str | None,
    extensions: bytes | None,
    headers: Headers,
    default_headers: bytes,
) -> bytes:
    """The 101 response. ``headers`` are the app's (``websocket.accept``); the handshake's own
    fields cannot be overridden. Raises ResponseHeadError for an invalid app header."""
    lines = [
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
        b"sec-websocket-accept: %s\r\n" % accept_token(handshake.key)
    ]
    if extensions:
        lines.append(b"sec-websocket-extensions: %s\r\n" % extensions)
    if subprotocol is not None:
        lines.append(b"sec-websocket-protocol: %s\r\n" % subprotocol.encode("latin-1"))
    seen_server = seen_date = False
    for name, value in headers:
        lname = name.lower()
        if not valid_field(lname, value):
            raise ResponseHeadError(f"invalid header {name!r}: {value!r}")
        if lname in _OWN_FIELDS or (subprotocol is not None and lname == b"sec-websocket-protocol"):
            continue
        seen_server = seen_server or lname == b"server"
        seen_date = seen_date or lname == b"date"
        lines.append(b"%s: %s\r\n" % (name, value))
    lines.append(server_defaults(default_headers, seen_server=seen_server, seen_date=seen_date))
    lines.append(b"\r\n")
    return b"".join(lines)
