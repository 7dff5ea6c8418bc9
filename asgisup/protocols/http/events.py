"""What a request parser produces: parser-neutral events and the error a client causes."""

from __future__ import annotations

from dataclasses import dataclass

Headers = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class RequestHead:
    """A parsed request line and header section. Header names are lower-cased."""

    method: bytes
    target: bytes
    http_version: str  # "1.0" or "1.1"
    headers: Headers


@dataclass(slots=True)
class Body:
    data: bytes


@dataclass(slots=True)
class EndOfRequest:
    pass


@dataclass(slots=True)
class Upgrade:
    """The request just ended asked to switch protocols (RFC 9110 §7.8): the parser stopped,
    and what the client sent after it is in ``Parser.take_rest()``."""


Event = RequestHead | Body | EndOfRequest | Upgrade
END_OF_REQUEST = EndOfRequest()
UPGRADE = Upgrade()


class ProtocolError(Exception):
    """The client sent something this server must refuse; answer ``status`` and close."""

    def __init__(self, status: int, reason: str, headers: bytes = b"") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers  # extra header lines for the error response
