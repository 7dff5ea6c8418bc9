"""HTTP/1.1 and the ASGI http scope, against a real server, for every loop and parser."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.serverproc import ServerProcess, wait_until


def address(server: ServerProcess) -> tuple[str, int]:
    parts = urlsplit(server.url)
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


def raw_exchange(server: ServerProcess, data: bytes, timeout: float = 30.0) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it."""
    with socket.create_connection(address(server), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def split_responses(data: bytes) -> list[tuple[bytes, bytes]]:
    """(head, body) of each Content-Length-framed response in ``data``."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        out.append((head, rest[:length]))
        data = rest[length:]
    return out


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def test_scope(client: httpx.Client, server: ServerProcess) -> None:
    response = client.get("/scope", params={"q": "a b"}, headers={"X-Custom": "Yes"})
    assert response.status_code == 200
    scope = response.json()
    host, port = address(server)
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/scope" and scope["raw_path"] == "/scope"
    assert scope["query_string"] == "q=a+b"
    assert scope["root_path"] == ""
    assert scope["server"] == [host, port]
    assert scope["client"][0] == "127.0.0.1" and isinstance(scope["client"][1], int)
    assert ["x-custom", "Yes"] in scope["headers"]
    assert scope["state"] == ["started"]  # set by the app's lifespan startup


def test_scope_addresses_are_the_two_ends_of_the_connection(server: ServerProcess) -> None:
    """The worker takes ``client`` from accept() and ``server`` from the listening socket
    (bound to one address), not from the kernel per connection: they must still be exact."""
    with socket.create_connection(address(server), timeout=30) as sock:
        sock.sendall(b"GET /scope HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        local, remote = sock.getsockname(), sock.getpeername()
    [(head, body)] = split_responses(data)
    assert head.startswith(b"HTTP/1.1 200"), head
    scope = json.loads(body)
    assert scope["client"] == [local[0], local[1]]
    assert scope["server"] == [remote[0], remote[1]]


def test_path_is_percent_decoded_and_raw_path_is_not(server: ServerProcess) -> None:
    data = raw_exchange(
        server, b"GET /sc%6fpe/../x%20y?z=%41 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    )
    assert data.startswith(b"HTTP/1.1 404")
    assert b'"path": "/scope/../x y"' in data


def test_server_and_date_headers(client: httpx.Client) -> None:
    response = client.get("/pid")
    assert response.headers["server"] == "asgisup"
    assert response.headers["date"].endswith(" GMT")


def test_streamed_request_body(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for i in range(50):
            yield b"%04d" % i * 512

    response = client.post("/echo", content=chunks())
    assert response.status_code == 200
    assert response.content == b"".join(b"%04d" % i * 512 for i in range(50))


def test_large_request_body_with_length(client: httpx.Client) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB: more than the body high-water mark
    assert client.post("/echo", content=body).content == body


def test_streamed_response_is_chunked(client: httpx.Client) -> None:
    response = client.get("/stream", params={"n": 5})
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.text == "".join(f"chunk{i}\n" for i in range(5))


def test_keep_alive_reuses_the_connection(server: ServerProcess) -> None:
    with socket.create_connection(address(server), timeout=30) as sock:
        for _ in range(3):
            sock.sendall(b"GET /pid HTTP/1.1\r\nHost: h\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(65536)
            assert head.startswith(b"HTTP/1.1 200")
            assert b"connection: close" not in head.lower()


def test_pipelined_requests_are_answered_in_order(server: ServerProcess) -> None:
    requests = (
        b"GET /status?code=201 HTTP/1.1\r\nHost: h\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /status?code=202 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    )
    responses = split_responses(raw_exchange(server, requests))
    assert [head.split(b" ")[1] for head, _ in responses] == [b"201", b"200", b"202"]
    assert responses[1][1] == b"hello"


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(server: ServerProcess, status: int) -> None:
    data = raw_exchange(
        server, b"GET /status?code=%d HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n" % status
    )
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d" % status)
    assert body == b"" and b"transfer-encoding" not in head


def test_head_has_no_body(server: ServerProcess) -> None:
    data = raw_exchange(
        server, b"HEAD /head-length HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    )
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"content-length: 5" in head and body == b""


def test_http10_without_keep_alive_is_closed(server: ServerProcess) -> None:
    data = raw_exchange(server, b"GET /stream HTTP/1.0\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"connection: close" in head
    assert body == b"chunk0\nchunk1\nchunk2\n"  # close-delimited, not chunked


def test_http10_keep_alive(server: ServerProcess) -> None:
    with socket.create_connection(address(server), timeout=30) as sock:
        sock.sendall(b"GET /pid HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        data = sock.recv(65536)
        assert b"connection: keep-alive" in data
        sock.sendall(b"GET /pid HTTP/1.0\r\n\r\n")
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
        assert rest.startswith(b"HTTP/1.1 200") and b"connection: close" in rest


def test_expect_continue(server: ServerProcess) -> None:
    with socket.create_connection(address(server), timeout=30) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
        )
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"abc")
        data = sock.recv(65536)
        assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"abc")


def test_client_disconnect_reaches_the_app_quietly(server: ServerProcess, tmp_path: Path) -> None:
    record = tmp_path / "messages.json"
    with socket.create_connection(address(server), timeout=30) as sock:
        sock.sendall(
            b"POST /until-disconnect?f=%s HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n"
            b"only part of the body" % str(record).encode()
        )
    wait_until(lambda: record.exists() and record.read_text() != "")
    assert json.loads(record.read_text())[-1] == "http.disconnect"
    assert "Traceback" not in server.log


def test_app_exception_gives_500_and_is_logged(client: httpx.Client, server: ServerProcess) -> None:
    response = client.get("/raise")
    assert response.status_code == 500
    assert b"boom" not in response.content  # no internal detail on the wire
    server.wait_for("RuntimeError: boom from the app")


def test_exception_after_start_closes_the_connection(server: ServerProcess) -> None:
    data = raw_exchange(server, b"GET /raise-after-start HTTP/1.1\r\nHost: h\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200") and b"partial" in data
    assert not data.endswith(b"0\r\n\r\n")  # the body was cut, not completed


def test_app_without_response_gives_500(client: httpx.Client, server: ServerProcess) -> None:
    assert client.get("/no-response").status_code == 500
    server.wait_for("returned without starting a response")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"NOT HTTP\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",  # no Host
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    ],
)
def test_malformed_requests_get_400_and_close(server: ServerProcess, request_bytes: bytes) -> None:
    data = raw_exchange(server, request_bytes)
    assert data.startswith(b"HTTP/1.1 400") and b"connection: close" in data


def test_worker_survives_bad_requests(client: httpx.Client, server: ServerProcess) -> None:
    for _ in range(5):
        raw_exchange(server, b"\x00\x01garbage\r\n\r\n")
    assert client.get("/pid").json()["pid"] == server.ready_pids[0]


def test_access_log_line(client: httpx.Client, server: ServerProcess) -> None:
    client.get("/status", params={"code": 418})
    server.wait_for(r'127\.0\.0\.1:\d+ - "GET /status\?code=418 HTTP/1\.1" 418')


def test_proxy_headers_from_trusted_peer(client: httpx.Client) -> None:
    scope = client.get(
        "/scope", headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    ).json()
    assert scope["client"] == ["203.0.113.7", 0]
    assert scope["scheme"] == "https"


@pytest.mark.parametrize(
    ("how", "status"),
    [("body-first", 500), ("status-text", 500), ("header-newline", 500), ("after-end", 200)],
)
def test_app_breaking_the_protocol_is_logged_once(
    server: ServerProcess, how: str, status: int
) -> None:
    before = server.log.count("Exception in ASGI application")
    response = httpx.get(f"{server.url}/misbehave?how={how}", timeout=30)
    assert response.status_code == status
    assert b"Traceback" not in response.content and b"injected" not in response.headers.raw[0]
    server.wait_for(r"^RuntimeError: ")
    assert httpx.get(f"{server.url}/pid", timeout=30).status_code == 200  # the worker lives on
    assert server.log.count("Exception in ASGI application") == before + 1


def test_response_shorter_than_its_length_closes_the_connection(server: ServerProcess) -> None:
    request = b"GET /misbehave?how=short-length HTTP/1.1\r\nHost: h\r\n\r\n"
    received = raw_exchange(server, request)
    assert received.startswith(b"HTTP/1.1 200") and received.endswith(b"short")
    server.wait_for(r"RuntimeError: response body shorter than its content-length")
