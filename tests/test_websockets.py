"""WebSockets against real server processes, with the websockets library's client and, for
byte-level cases, raw sockets. Both implementations (websockets, wsproto), both parsers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import struct
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from asgisup.config import Config
from asgisup.errors import ConfigError
from asgisup.runner import resolve_implementations
from tests.serverproc import ROOT, TIMEOUT, ServerProcess, free_port, run_cli
from tests.wsframes import frame, read_frame

# (loop, parser, WebSocket implementation): each parser and each implementation once.
WS_COMBOS = [
    pytest.param(("uvloop", "httptools", "websockets"), id="uvloop-httptools-websockets"),
    pytest.param(("asyncio", "h11", "wsproto"), id="asyncio-h11-wsproto"),
]
MAX_SIZE = 65536
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


@pytest.fixture(scope="module", params=WS_COMBOS)
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    loop, http, ws = request.param
    args = ["--loop", loop, "--http", http, "--ws", ws, "--ws-max-size", str(MAX_SIZE)]
    args += ["--ws-ping-interval", "0.5", "--ws-ping-timeout", "1"]
    with ServerProcess("tests.wsapps:app", *args, "--timeout-graceful-shutdown", "5") as proc:
        proc.start()
        yield proc
        assert proc.stop() == 0, proc.log


def ws_url(server: ServerProcess, path: str) -> str:
    host, port = server.address
    return f"ws://{host}:{port}{path}"


@pytest.fixture
async def echo(server: ServerProcess) -> AsyncIterator[ClientConnection]:
    # Uncompressed: sizes on the wire are the message sizes (the deflate test compresses).
    async with connect(ws_url(server, "/echo"), open_timeout=TIMEOUT, compression=None) as ws:
        yield ws


def ws_log(server: ServerProcess) -> list[dict[str, object]]:
    """What the worker's WebSocket routes were told at their end (tests.wsapps)."""
    return list(httpx.get(server.url + "/ws-log", timeout=TIMEOUT).json())


async def wait_logged(server: ServerProcess, entry: dict[str, object]) -> None:
    for _ in range(int(TIMEOUT * 10)):
        if entry in await asyncio.to_thread(ws_log, server):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{entry} not in {ws_log(server)}")


async def wait_for_figures(client: httpx.AsyncClient, bind: str, **expected: float) -> None:
    """Poll the supervisor's /metrics until the (one) worker's gauges have these values."""
    found: dict[str, float] = {}
    for _ in range(int(TIMEOUT * 10)):
        text = (await client.get(f"http://{bind}/metrics")).text
        for name in expected:
            match = re.search(rf"^asgisup_worker_{name}\{{[^}}]*\}} (\S+)$", text, re.M)
            if match:
                found[name] = float(match[1])
        if found == expected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{found} != {expected}")


# -- messages ------------------------------------------------------------------------------


async def test_echo_of_text_bytes_and_fragments(echo: ClientConnection) -> None:
    await echo.send("héllo")
    assert await echo.recv() == "héllo"
    await echo.send(b"\x00\xff" * 10)
    assert await echo.recv() == b"\x00\xff" * 10
    await echo.send(["frag", "mented ", "text"])
    assert await echo.recv() == "fragmented text"
    big = os.urandom(MAX_SIZE)  # exactly the limit is allowed
    await echo.send(big)
    assert await echo.recv() == big


async def test_scope(server: ServerProcess) -> None:
    async with connect(ws_url(server, "/scope?a=1"), subprotocols=["x", "y"]) as ws:
        scope = json.loads(await ws.recv())
    assert scope["type"] == "websocket"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/scope"
    assert scope["query_string"] == "a=1"
    assert scope["subprotocols"] == ["x", "y"]
    assert scope["http_version"] == "1.1"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["extensions"] == {"websocket.http.response": {}}
    assert scope["client"][0] == "127.0.0.1"


async def test_subprotocol_and_accept_headers(server: ServerProcess) -> None:
    async with connect(ws_url(server, "/echo?sub=y"), subprotocols=["x", "y"]) as ws:
        assert ws.subprotocol == "y"
        assert ws.response.headers["x-accepted-by"].isdigit()
        assert ws.response.headers["server"] == "asgisup"
    async with connect(ws_url(server, "/echo"), subprotocols=["x"]) as ws:
        assert ws.subprotocol is None


async def test_per_message_deflate_is_negotiated_when_offered(server: ServerProcess) -> None:
    async with connect(ws_url(server, "/echo")) as ws:
        assert "permessage-deflate" in ws.response.headers["sec-websocket-extensions"]
        text = "compressible " * 1000
        await ws.send(text)
        assert await ws.recv() == text
    async with connect(ws_url(server, "/echo"), compression=None) as ws:
        assert "sec-websocket-extensions" not in ws.response.headers


# -- closing -------------------------------------------------------------------------------


async def test_app_closes_with_code_and_reason(echo: ClientConnection) -> None:
    await echo.send("close 4001 bye now")
    with pytest.raises(ConnectionClosed):
        await echo.recv()
    assert echo.close_code == 4001
    assert echo.close_reason == "bye now"


async def test_client_closes_with_code_and_reason(server: ServerProcess) -> None:
    ws = await connect(ws_url(server, "/echo"))
    await ws.close(4002, "see you")
    await wait_logged(server, {"path": "/echo", "code": 4002, "reason": "see you"})


async def test_oversized_message_closes_with_1009(echo: ClientConnection) -> None:
    await echo.send(b"x" * (MAX_SIZE + 1))
    with pytest.raises(ConnectionClosed):
        await echo.recv()
    assert echo.close_code == 1009


async def test_oversized_fragmented_message_closes_with_1009(echo: ClientConnection) -> None:
    await echo.send([b"x" * (MAX_SIZE // 2)] * 3)
    with pytest.raises(ConnectionClosed):
        await echo.recv()
    assert echo.close_code == 1009


async def test_app_error_after_accept_closes_with_1011(server: ServerProcess) -> None:
    async with connect(ws_url(server, "/raise-after-accept")) as ws:
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1011
    server.wait_for("broke after accepting")


async def test_app_returning_after_accept_closes_with_1000(server: ServerProcess) -> None:
    async with connect(ws_url(server, "/return-after-accept")) as ws:
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1000


# -- denial --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status"),
    [("/deny", 403), ("/raise-before-accept", 500), ("/no-answer", 500), ("/deny-custom", 401)],
)
async def test_denied_handshakes_get_an_http_response(
    server: ServerProcess, path: str, status: int
) -> None:
    with pytest.raises(InvalidStatus) as caught:
        await connect(ws_url(server, path), open_timeout=TIMEOUT)
    response = caught.value.response
    assert response.status_code == status
    if path == "/deny-custom":
        assert response.headers["x-denied"] == "yes"
        assert response.body == b"no entry"


# -- byte level ----------------------------------------------------------------------------


def handshake_request(path: str, *extra: str, version: str = "13", key: bytes = KEY) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key.decode()}",
        f"Sec-WebSocket-Version: {version}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def open_raw(
    server: ServerProcess, path: str, early: bytes = b""
) -> tuple[socket.socket, bytearray]:
    """A raw socket past the 101 response; ``early`` goes in the same send as the request."""
    sock = socket.create_connection(server.address, timeout=TIMEOUT)
    sock.sendall(handshake_request(path) + early)
    buffer = bytearray()
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, bytes(buffer)
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 "), head
    assert b"\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head  # RFC 6455 §1.3
    return sock, bytearray(rest)


def test_frames_sent_with_the_handshake_are_not_lost(server: ServerProcess) -> None:
    early = frame(0x1, b"early") + frame(0x2, b"bird")
    sock, buffer = open_raw(server, "/echo", early)
    with sock:
        frames = [read_frame(sock, buffer) for _ in range(2)]
        while (0x9, b"asgisup") in frames:  # a keepalive ping may come first on a slow machine
            frames.remove((0x9, b"asgisup"))
            frames.append(read_frame(sock, buffer))
        assert frames == [(0x1, b"early"), (0x2, b"bird")]


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (frame(0x1, b"\xff\xfe"), 1007),  # invalid UTF-8 in a text message
        (frame(0x1, b"unmasked", mask=False), 1002),  # clients must mask (RFC 6455 §5.1)
        (frame(0x3, b"reserved opcode"), 1002),
    ],
    ids=["invalid-utf8", "unmasked", "reserved-opcode"],
)
def test_protocol_violations_close_with_the_right_code(
    server: ServerProcess, bad: bytes, code: int
) -> None:
    sock, buffer = open_raw(server, "/echo")
    with sock:
        sock.sendall(bad)
        while True:
            opcode, payload = read_frame(sock, buffer)
            assert opcode != -1, "closed without a close frame"
            if opcode == 0x8:
                break
        assert struct.unpack("!H", payload[:2])[0] == code


def test_a_client_that_stops_answering_pings_is_closed(server: ServerProcess) -> None:
    # A raw client that never answers: the server pings every 0.5 s, waits 1 s for a pong.
    sock, buffer = open_raw(server, "/echo?sub=silent")
    with sock:
        opcodes = []
        while True:
            opcode, payload = read_frame(sock, buffer)
            opcodes.append(opcode)
            if opcode in (-1, 0x8):
                break
        assert 0x9 in opcodes  # it was pinged
        assert opcode == 0x8 and struct.unpack("!H", payload[:2])[0] == 1011
    asyncio.run(
        wait_logged(server, {"path": "/echo", "code": 1011, "reason": "keepalive ping timeout"})
    )


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (handshake_request("/echo", version="8"), b"426"),
        (handshake_request("/echo", key=b"short"), b"400"),
        (handshake_request("/echo", "Content-Length: 5") + b"hello", b"400"),
        (handshake_request("/echo").replace(b"GET", b"POST"), b"400"),
    ],
    ids=["version", "key", "body", "method"],
)
def test_malformed_handshakes_are_refused(
    server: ServerProcess, request_bytes: bytes, status: bytes
) -> None:
    with socket.create_connection(server.address, timeout=TIMEOUT) as sock:
        sock.sendall(request_bytes)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    assert response.split(b" ")[1] == status, response
    if status == b"426":
        assert b"sec-websocket-version: 13" in response


def test_other_upgrades_are_served_as_http_and_the_connection_goes_on(
    server: ServerProcess,
) -> None:
    first = b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
    second = b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with socket.create_connection(server.address, timeout=TIMEOUT) as sock:
        sock.sendall(first + second)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    assert response.count(b"HTTP/1.1 200 OK") == 2, response


# -- options and admission -----------------------------------------------------------------


def test_ws_none_hands_handshakes_to_the_app_as_http() -> None:
    with ServerProcess("tests.wsapps:app", "--ws", "none") as server:
        server.start()
        with socket.create_connection(server.address, timeout=TIMEOUT) as sock:
            sock.sendall(handshake_request("/pid"))
            response = sock.recv(65536)
        assert response.startswith(b"HTTP/1.1 200 OK"), response
        assert "ws none" in server.log
        assert server.stop() == 0


async def test_open_websockets_hold_no_request_slot() -> None:
    """--max-inflight 1 and five open WebSockets: HTTP requests are still served at once."""
    metrics = f"127.0.0.1:{free_port()}"
    with ServerProcess(
        "tests.wsapps:app",
        *("--max-inflight", "1", "--max-websockets", "5", "--ws", "wsproto"),
        *("--metrics-bind", metrics),
    ) as server:
        server.start()
        url = ws_url(server, "/echo")
        sockets = [await connect(url, open_timeout=TIMEOUT) for _ in range(5)]
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            for _ in range(3):
                response = await client.get(server.url + "/pid")
                assert response.status_code == 200
            # The worker's figures: five WebSockets open, none of them in its load.
            await wait_for_figures(client, metrics, websockets=5, load=0)
        for i, ws in enumerate(sockets):
            await ws.send(f"still here {i}")
            assert await ws.recv() == f"still here {i}"
        # The sixth WebSocket is over --max-websockets: refused at once with 503.
        with pytest.raises(InvalidStatus) as caught:
            await connect(url, open_timeout=TIMEOUT)
        assert caught.value.response.status_code == 503
        await sockets.pop().close()
        async with connect(url, open_timeout=TIMEOUT) as again:  # its place is free again
            await again.send("in")
            assert await again.recv() == "in"
        for ws in sockets:
            await ws.close()
        assert server.stop() == 0


async def test_the_handshake_holds_a_request_slot_until_the_app_accepts(tmp_path: Path) -> None:
    metrics = f"127.0.0.1:{free_port()}"
    with ServerProcess(
        "tests.wsapps:app", "--max-inflight", "1", "--metrics-bind", metrics
    ) as server:
        server.start()
        go = tmp_path / "go"
        handshake = asyncio.ensure_future(
            connect(ws_url(server, f"/accept-when?f={go}"), open_timeout=TIMEOUT)
        )
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            # The app is deciding: the handshake is the worker's one request in flight.
            await wait_for_figures(client, metrics, load=1, websockets=1)
            go.touch()
            ws = await handshake
            await wait_for_figures(client, metrics, load=0, websockets=1)  # the slot is back
            await ws.send("after")
            assert await ws.recv() == "after"
            await ws.close()
        assert server.stop() == 0


async def test_shutdown_closes_websockets_with_1012_after_the_deadline() -> None:
    # The deadline leaves the echo during the drain time even on a slow machine.
    with ServerProcess("tests.wsapps:app", "--timeout-graceful-shutdown", "3") as server:
        server.start()
        ws = await connect(ws_url(server, "/echo"), open_timeout=TIMEOUT)
        server.signal(signal.SIGTERM)
        server.wait_for("draining")
        await ws.send("during the drain")  # open until the deadline
        assert await ws.recv() == "during the drain"
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert ws.close_code == 1012
        assert await asyncio.to_thread(server.wait) == 0


async def test_shutdown_ends_early_when_the_app_closes_its_websockets() -> None:
    with ServerProcess("tests.wsapps:app", "--timeout-graceful-shutdown", "300") as server:
        server.start()
        ws = await connect(ws_url(server, "/echo"), open_timeout=TIMEOUT)
        server.signal(signal.SIGTERM)
        server.wait_for("draining")
        await ws.send("close 1001 going away")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert ws.close_code == 1001
        # Well before the 300 s deadline: the worker had nothing else to wait for.
        assert await asyncio.to_thread(server.wait) == 0
        assert "deadline" not in server.log


async def test_rolling_restart_closes_websockets_with_1012_and_new_ones_reach_new_workers() -> None:
    with ServerProcess(
        "tests.wsapps:app", "--workers", "2", "--timeout-graceful-shutdown", "1"
    ) as server:
        server.start(wait_ready=2)
        old = await connect(ws_url(server, "/echo"), open_timeout=TIMEOUT)
        old_pid = old.response.headers["x-accepted-by"]
        server.signal(signal.SIGHUP)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(old.recv(), TIMEOUT)
        assert old.close_code == 1012
        server.wait_for("Rolling restart (complete|done|finished)")
        async with connect(ws_url(server, "/echo"), open_timeout=TIMEOUT) as new:
            assert new.response.headers["x-accepted-by"] != old_pid
            await new.send("new")
            assert await new.recv() == "new"
        assert server.stop() == 0


@pytest.mark.parametrize("library", ["websockets", "wsproto"])
def test_asking_for_a_library_that_is_not_installed_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, library: str
) -> None:
    monkeypatch.setitem(sys.modules, library, None)  # what find_spec reports when absent
    config = Config.from_sources("tests.wsapps:app", {"ws": library}, {})
    with pytest.raises(ConfigError) as caught:
        resolve_implementations(config)
    assert str(caught.value) == (
        f"--ws {library}: {library} is not installed (pip install 'asgisup[standard]')"
    )
    monkeypatch.setitem(sys.modules, "websockets", None)
    monkeypatch.setitem(sys.modules, "wsproto", None)
    auto = Config.from_sources("tests.wsapps:app", {}, {})
    assert resolve_implementations(auto)[2] == "none"


def test_a_library_that_fails_to_import_stops_the_server_with_its_error(tmp_path: Path) -> None:
    # Found on the path (the supervisor checks only that), broken when the worker imports it.
    (tmp_path / "wsproto.py").write_text("raise ImportError('wsproto is broken here')\n")
    result = run_cli("tests.wsapps:app", "--ws", "wsproto", PYTHONPATH=f"{tmp_path}:{ROOT}")
    assert result.returncode == 3, result.stderr
    assert result.stderr.count("wsproto is broken here") == 1, result.stderr
    assert result.stderr.splitlines()[-1] == "asgisup: error: --ws wsproto: wsproto is broken here"
