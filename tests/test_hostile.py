"""Hostile and malformed input: the corpus in tests/http_corpus/, hostile chunkings, fuzzing,
slowloris, stalled readers and writers, size limits. Both parsers, real sockets."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asgisup.protocols.http import framing
from asgisup.protocols.http.events import Body, EndOfRequest, Event, ProtocolError, RequestHead
from asgisup.protocols.http.parsers import H11Parser, HttptoolsParser
from tests.corpus import Case, cases
from tests.serverproc import TIMEOUT, ServerProcess, wait_until
from tests.test_http import address

CASES = cases()
PARSERS = {"h11": H11Parser, "httptools": HttptoolsParser}


# -- the corpus, in process: every way of cutting the bytes gives the same result ----------


def _outcome(parser_name: str, pieces: list[bytes]) -> object:
    """What the server would act on: the requests (head, whole body) parsed, or the error."""
    parser = PARSERS[parser_name]()
    events: list[Event] = []
    try:
        for piece in pieces:
            events.extend(parser.feed(piece))
        requests: list[tuple[RequestHead, bytes, bool]] = []
        for event in events:
            if isinstance(event, RequestHead):
                framing.validate_head(event)
                requests.append((event, b"", False))
            elif isinstance(event, Body):
                head, body, _ = requests[-1]
                requests[-1] = (head, body + event.data, False)
            elif isinstance(event, EndOfRequest):
                head, body, _ = requests[-1]
                requests[-1] = (head, body, True)
        return requests
    except ProtocolError as exc:
        return exc.status


def _splits(data: bytes) -> Iterator[list[bytes]]:
    """One byte at a time, then cut in two at every boundary (sampled for long requests)."""
    yield [data[i : i + 1] for i in range(len(data))]
    step = max(1, len(data) // 300)
    for cut in range(1, len(data), step):
        yield [data[:cut], data[cut:]]


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_corpus_parses_the_same_however_it_is_cut(case: Case, parser: str) -> None:
    whole = _outcome(parser, [case.request])
    status, _ = case.expect(parser)
    assert (whole if isinstance(whole, int) else 200) == status
    for pieces in _splits(case.request):
        assert _outcome(parser, pieces) == whole, f"cut as {[len(p) for p in pieces][:5]}..."


# -- the corpus against real servers ------------------------------------------------------


@pytest.fixture(scope="module", params=list(PARSERS))
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with ServerProcess("tests.apps:app", "--http", request.param) as proc:
        proc.start()
        proc.parser = request.param  # type: ignore[attr-defined]
        yield proc
        # Nothing the clients did cost the worker: it is the one that started.
        pid = _get(proc, b"GET /pid HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        assert proc.ready_pids == [int(pid[1].split(b'"pid": ')[1].rstrip(b"}"))]
        assert proc.stop() == 0
        assert "Traceback" not in proc.log


def _read_response(sock: socket.socket) -> tuple[int, bytes] | None:
    """(status, body) of one Content-Length response; None when the server closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 "), head
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the response was cut short"
        body += chunk
    assert b"Traceback" not in body
    return int(head[9:12]), body[:length]


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _get(server: ServerProcess, data: bytes) -> tuple[int, bytes]:
    with socket.create_connection(address(server), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        answer = _read_response(sock)
    assert answer is not None
    return answer


def test_corpus_against_the_server(server: ServerProcess) -> None:
    parser: str = server.parser  # type: ignore[attr-defined]
    for case in CASES:
        status, close = case.expect(parser)
        with socket.create_connection(address(server), timeout=TIMEOUT) as sock:
            sock.sendall(case.request)
            answer = _read_response(sock)
            assert answer is not None and answer[0] == status, (case.name, answer)
            if close:
                assert _closed(sock), case.name
            else:  # the connection is still good for another request
                sock.sendall(b"GET /pid HTTP/1.1\r\nHost: h\r\n\r\n")
                again = _read_response(sock)
                assert again is not None and again[0] == 200, case.name


def test_corpus_one_byte_at_a_time(server: ServerProcess) -> None:
    parser: str = server.parser  # type: ignore[attr-defined]
    for case in CASES:
        if len(case.request) > 4096:
            continue  # the 431 case: covered whole, and in process at every cut
        status, _ = case.expect(parser)
        with socket.create_connection(address(server), timeout=TIMEOUT) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                for i in range(len(case.request)):
                    sock.send(case.request[i : i + 1])
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server already answered and closed: read what it said
            answer = _read_response(sock)
            # An early answer can be lost to a reset while bytes were still arriving; the
            # status itself is checked at every cut in process above.
            assert answer is None or answer[0] == status, (case.name, answer)


# -- fuzzing ------------------------------------------------------------------------------

_TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_TOKEN = st.text(_TCHAR, max_size=12)
_ANY = st.binary(max_size=24)
_LINE_END = st.sampled_from([b"\r\n", b"\n", b"\r", b"\r\r\n", b""])


@st.composite
def _requests(draw: st.DrawFn) -> bytes:
    method = draw(st.one_of(st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT"]), _ANY))
    target = draw(st.one_of(st.sampled_from([b"/pid", b"/echo", b"*", b"http://h/pid"]), _ANY))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"HTTP/1.1 ", b""]))
    out = method + draw(st.sampled_from([b" ", b"  ", b"\t"])) + target + b" " + version
    out += draw(_LINE_END)
    fields = draw(
        st.lists(
            st.tuples(
                st.one_of(
                    st.sampled_from(
                        [b"Host", b"Content-Length", b"Transfer-Encoding", b"Connection"]
                    ),
                    _TOKEN.map(str.encode),
                    _ANY,
                ),
                st.one_of(st.sampled_from([b"h", b"5", b"chunked", b"close", b"-1"]), _ANY),
            ),
            max_size=6,
        )
    )
    for name, value in fields:
        out += name + draw(st.sampled_from([b": ", b":", b" : "])) + value + draw(_LINE_END)
    out += draw(_LINE_END) + draw(st.sampled_from([b"", b"hello", b"5\r\nhello\r\n0\r\n\r\n"]))
    return out + draw(_ANY)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=_requests())
def test_fuzzed_requests_get_a_response_or_a_clean_close(
    server: ServerProcess, data: bytes
) -> None:
    with socket.create_connection(address(server), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # nothing more is coming: the server must decide
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    if received:
        assert received.startswith(b"HTTP/1.1 "), received[:80]
        status = int(received[9:12])
        assert 100 <= status <= 599 and status not in (500, 502, 503)
        assert b"Traceback" not in received


# -- slow and stalled clients -------------------------------------------------------------


_CLOSE_GET = b"GET /pid HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"


def test_slowloris_is_dropped_while_others_are_served() -> None:
    args = ("--timeout-request-head", "1", "--timeout-keep-alive", "5")
    with ServerProcess("tests.apps:app", *args) as server:
        server.start()
        with socket.create_connection(address(server), timeout=TIMEOUT) as slow:
            slow.sendall(b"GET /pid HTTP/1.1\r\nHost: h\r\n")
            began = time.monotonic()
            answer: tuple[int, bytes] | None = None
            served = 0
            while answer is None:
                slow.sendall(b"X-A: b\r\n")  # a header now and then, never the end
                served += _get(server, _CLOSE_GET)[0] == 200
                slow.settimeout(0.2)
                try:
                    answer = _read_response(slow)
                    break
                except TimeoutError:
                    pass
                assert time.monotonic() - began < 30, "the slow client was never dropped"
            elapsed = time.monotonic() - began
            assert answer is not None and answer[0] == 408
            assert 0.9 <= elapsed < 10
            assert served >= 1
        assert server.stop() == 0


def _resident(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_client_that_does_not_read_costs_bounded_memory(tmp_path: Path) -> None:
    marker = tmp_path / "sent"
    with ServerProcess("tests.apps:app", "--timeout-client-stall", "2") as server:
        server.start()
        (pid,) = server.ready_pids
        before = _resident(pid)
        with socket.create_connection(address(server), timeout=TIMEOUT) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock.sendall(f"GET /big?mb=300&f={marker} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
            wait_until(marker.exists)  # the stall timeout ended the response
            grown = _resident(pid) - before
        sent = int(marker.read_text())
        assert sent < 32 * 1024 * 1024  # of 300 MiB: the app was held back by flow control
        assert grown < 32 * 1024 * 1024
        assert _get(server, b"GET /pid HTTP/1.1\r\nHost: h\r\n\r\n")[0] == 200
        assert server.stop() == 0
        assert "Traceback" not in server.log


def test_stalled_request_body_is_dropped() -> None:
    with ServerProcess("tests.apps:app", "--timeout-client-stall", "1") as server:
        server.start()
        with socket.create_connection(address(server), timeout=TIMEOUT) as sock:
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nhello")
            began = time.monotonic()
            assert _closed(sock)
            assert time.monotonic() - began < 20
        assert _get(server, b"GET /pid HTTP/1.1\r\nHost: h\r\n\r\n")[0] == 200
        assert server.stop() == 0
        assert "Traceback" not in server.log


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_request_body_limit(http: str) -> None:
    with ServerProcess(
        "tests.apps:app", "--http", http, "--max-request-body-size", "100"
    ) as server:
        server.start()
        declared = b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n"
        assert _get(server, declared)[0] == 413
        chunked = b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        chunked += b"c8\r\n" + b"x" * 200 + b"\r\n0\r\n\r\n"
        assert _get(server, chunked)[0] == 413
        small = b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n" + b"y" * 100
        assert _get(server, small) == (200, b"y" * 100)
        assert server.stop() == 0


def test_header_count_and_head_size_limits() -> None:
    args = ("--max-request-headers", "5", "--max-request-head-size", "2048")
    with ServerProcess("tests.apps:app", *args) as server:
        server.start()
        fields = b"".join(b"X-%d: 1\r\n" % i for i in range(5))
        assert _get(server, b"GET /pid HTTP/1.1\r\nHost: h\r\n" + fields + b"\r\n")[0] == 431
        assert _get(server, b"GET /pid HTTP/1.1\r\nHost: h\r\n" + fields[:-8] + b"\r\n")[0] == 200
        big = b"GET /pid HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 3000 + b"\r\n\r\n"
        assert _get(server, big)[0] == 431
        assert server.stop() == 0
