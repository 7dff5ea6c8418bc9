"""The WebSocket handshake and both frame engines, in process: bytes in, events and bytes out."""

from __future__ import annotations

import struct

import pytest

from asgisup.protocols.http.events import ProtocolError, RequestHead
from asgisup.protocols.http.framing import ResponseHeadError
from asgisup.protocols.websocket import handshake
from asgisup.protocols.websocket.engines import PONG, Closed, Engine, engine_factory
from asgisup.protocols.websocket.websockets_engine import WebsocketsEngine
from asgisup.protocols.websocket.wsproto_engine import WsprotoEngine
from tests.wsframes import frame

ENGINES = [WebsocketsEngine, WsprotoEngine]
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def head(*extra: tuple[bytes, bytes], method: bytes = b"GET", version: str = "1.1") -> RequestHead:
    headers = [
        (b"host", b"example.com"),
        (b"upgrade", b"WebSocket"),
        (b"connection", b"keep-alive, Upgrade"),
        (b"sec-websocket-key", KEY),
        (b"sec-websocket-version", b"13"),
        *extra,
    ]
    return RequestHead(method, b"/chat", version, headers)


# -- handshake -----------------------------------------------------------------------------


def test_a_websocket_request_needs_both_upgrade_and_connection() -> None:
    assert handshake.is_websocket_request(head())
    only_upgrade = RequestHead(b"GET", b"/", "1.1", [(b"upgrade", b"websocket")])
    assert not handshake.is_websocket_request(only_upgrade)
    h2c = RequestHead(b"GET", b"/", "1.1", [(b"upgrade", b"h2c"), (b"connection", b"upgrade")])
    assert not handshake.is_websocket_request(h2c)


def test_check_collects_subprotocols_and_extension_offers() -> None:
    request = handshake.check(
        head(
            (b"sec-websocket-protocol", b"chat, superchat"),
            (b"sec-websocket-protocol", b"v2"),
            (b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits, x-foo"),
        )
    )
    assert request.subprotocols == ["chat", "superchat", "v2"]
    assert request.extensions == [b"permessage-deflate; client_max_window_bits", b"x-foo"]


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (head(method=b"POST"), 400),
        (head(version="1.0"), 400),
        (RequestHead(b"GET", b"/", "1.1", head().headers[:-1]), 426),  # no version
        (RequestHead(b"GET", b"/", "1.1", head().headers[:3] + head().headers[4:]), 400),  # key
        (head((b"content-length", b"3")), 400),
    ],
    ids=["method", "http-1.0", "version", "key", "body"],
)
def test_check_refuses_malformed_handshakes(request_head: RequestHead, status: int) -> None:
    with pytest.raises(ProtocolError) as caught:
        handshake.check(request_head)
    assert caught.value.status == status
    if status == 426:
        assert caught.value.headers == b"sec-websocket-version: 13\r\n"


def test_accept_response_keeps_the_handshake_fields_the_servers() -> None:
    request = handshake.check(head((b"sec-websocket-protocol", b"chat")))
    response = handshake.accept_response(
        request,
        subprotocol="chat",
        extensions=b"permessage-deflate",
        headers=[(b"X-App", b"1"), (b"Upgrade", b"h2c"), (b"Server", b"mine")],
        default_headers=b"server: asgisup\r\ndate: today\r\n",
    )
    lines = response.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 101 Switching Protocols"
    assert b"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in lines  # RFC 6455 §1.3
    assert b"sec-websocket-protocol: chat" in lines
    assert b"sec-websocket-extensions: permessage-deflate" in lines
    assert b"X-App: 1" in lines and b"Server: mine" in lines and b"date: today" in lines
    assert b"Upgrade: h2c" not in lines and b"server: asgisup" not in lines
    assert response.endswith(b"\r\n\r\n")
    with pytest.raises(ResponseHeadError):
        handshake.accept_response(
            request,
            subprotocol=None,
            extensions=None,
            headers=[(b"x", b"a\r\nb")],
            default_headers=b"",
        )


# -- engines -------------------------------------------------------------------------------


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each unmasked server frame in ``data``."""
    frames = []
    while data:
        opcode, length, start = data[0] & 0x0F, data[1] & 0x7F, 2
        if length == 126:
            length, start = struct.unpack("!H", data[2:4])[0], 4
        elif length == 127:
            length, start = struct.unpack("!Q", data[2:10])[0], 10
        frames.append((opcode, data[start : start + length]))
        data = data[start + length :]
    return frames


def close_code(data: bytes) -> int:
    ((_, payload),) = [f for f in server_frames(data) if f[0] == 0x8]
    return int(struct.unpack("!H", payload[:2])[0])


@pytest.fixture(params=ENGINES, ids=lambda e: e.__name__)
def engine(request: pytest.FixtureRequest) -> Engine:
    made: Engine = request.param(1000, False)
    assert made.negotiate([]) is None
    return made


def test_messages_whole_and_in_fragments(engine: Engine) -> None:
    data = frame(0x1, "é".encode()) + frame(0x2, b"\x00\x01")
    data += frame(0x1, b"frag", fin=False) + frame(0x0, b"men", fin=False) + frame(0x0, b"ted")
    assert engine.receive(data) == ["é", b"\x00\x01", "fragmented"]
    # A fragmented message cut anywhere, fed byte by byte.
    split = frame(0x2, b"ab", fin=False) + frame(0x0, b"cd")
    events = [event for byte in split for event in engine.receive(bytes([byte]))]
    assert events == [b"abcd"]


def test_ping_is_answered_and_pong_reported(engine: Engine) -> None:
    assert engine.receive(frame(0x9, b"are you there")) == []
    assert server_frames(engine.output()) == [(0xA, b"are you there")]
    assert engine.receive(frame(0xA, b"")) == [PONG]


def test_client_close_is_answered(engine: Engine) -> None:
    events = engine.receive(frame(0x8, struct.pack("!H", 4000) + b"done"))
    assert events == [Closed(4000, "done")]
    assert close_code(engine.output()) == 4000


def test_server_close_then_the_clients_answer(engine: Engine) -> None:
    engine.close(1001, "away")
    assert close_code(engine.output()) == 1001
    engine.close(1000)  # once closing, nothing more is sent
    assert engine.output() == b""
    assert engine.receive(frame(0x8, struct.pack("!H", 1001))) == [Closed(1001, "")]


@pytest.mark.parametrize("fragments", [1, 4])
def test_message_over_max_size_closes_with_1009(engine: Engine, fragments: int) -> None:
    part = b"x" * (1001 // fragments + 1)
    data = b"".join(
        frame(0x2 if i == 0 else 0x0, part, fin=i == fragments - 1) for i in range(fragments)
    )
    events = engine.receive(data)
    assert events and isinstance(events[-1], Closed) and events[-1].code == 1009
    assert close_code(engine.output()) == 1009


def test_invalid_utf8_closes_with_1007(engine: Engine) -> None:
    events = engine.receive(frame(0x1, b"ok \xff"))
    assert isinstance(events[-1], Closed) and events[-1].code == 1007
    assert close_code(engine.output()) == 1007


def test_unmasked_frame_closes_with_1002(engine: Engine) -> None:
    events = engine.receive(frame(0x1, b"hi", mask=False))
    assert isinstance(events[-1], Closed) and events[-1].code == 1002
    assert close_code(engine.output()) == 1002


def test_sent_messages_are_framed(engine: Engine) -> None:
    engine.send("hé")
    engine.send(b"\x01")
    engine.ping(b"p")
    assert server_frames(engine.output()) == [(0x1, "hé".encode()), (0x2, b"\x01"), (0x9, b"p")]


@pytest.mark.parametrize("make", ENGINES, ids=lambda e: e.__name__)
def test_per_message_deflate(make: type[WsprotoEngine] | type[WebsocketsEngine]) -> None:
    engine = make(1 << 20, True)
    accepted = engine.negotiate([b"permessage-deflate; client_max_window_bits"])
    assert accepted is not None and accepted.startswith(b"permessage-deflate")
    text = "compress me " * 100
    engine.send(text)
    out = engine.output()
    ((opcode, payload),) = server_frames(out)
    assert opcode == 0x1 and out[0] & 0x40  # RSV1: the message is compressed
    assert len(payload) < len(text) // 4
    declined = make(1 << 20, False)
    assert declined.negotiate([b"permessage-deflate"]) is None


def test_engine_factory_names() -> None:
    assert engine_factory("none") is None
    assert engine_factory("websockets") is WebsocketsEngine
    assert engine_factory("wsproto") is WsprotoEngine
    assert engine_factory("auto") is WebsocketsEngine


def test_a_message_in_many_small_fragments(engine: Engine) -> None:
    text = "é" * 300  # 600 bytes, each character cut between two fragments somewhere
    raw = text.encode()
    pieces = [raw[i : i + 1] for i in range(len(raw))]
    data = b"".join(
        frame(0x1 if i == 0 else 0x0, piece, fin=i == len(pieces) - 1)
        for i, piece in enumerate(pieces)
    )
    assert engine.receive(data) == [text]
    binary = b"".join(frame(0x2 if i == 0 else 0x0, b"x", fin=i == 999) for i in range(1000))
    events = engine.receive(binary)  # 1000 bytes: exactly the engine fixture's max_size
    assert events == [b"x" * 1000]
