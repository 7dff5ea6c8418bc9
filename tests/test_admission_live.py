"""The admission contract with real workers: excess work waits in the kernel queue."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.serverproc import ServerProcess, wait_until


def _address(server: ServerProcess) -> tuple[str, int]:
    parts = urlsplit(server.url)
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


def _read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """One Content-Length-framed response from a keep-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before a response"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head, body


def _hold_in_background(
    server: ServerProcess, marker: Path
) -> tuple[threading.Thread, dict[str, int]]:
    result: dict[str, int] = {}

    def hold() -> None:
        result["pid"] = httpx.get(f"{server.url}/hold?f={marker}", timeout=60).json()["pid"]

    thread = threading.Thread(target=hold)
    thread.start()
    started = Path(f"{marker}.started")
    wait_until(lambda: started.exists() and started.read_text() != "")  # the pid is written
    return thread, result


def test_full_worker_accepts_nothing_while_a_sibling_serves(tmp_path: Path) -> None:
    """2 workers, ceiling 1: while A serves a long request, 10 new connections all go to B."""
    marker = tmp_path / "release"
    with ServerProcess("tests.apps:app", "--workers", "2", "--max-inflight", "1") as server:
        server.start(wait_ready=2)
        holder, held = _hold_in_background(server, marker)
        try:
            with ThreadPoolExecutor(10) as pool:
                answers = list(
                    pool.map(
                        lambda _: httpx.get(server.url + "/pid", timeout=30).json()["pid"],
                        range(10),
                    )
                )
            # Had A accepted one of them, that request would still wait behind the held one.
            assert "pid" not in held
        finally:
            marker.touch()
            holder.join(60)
        assert len(set(answers)) == 1 and held["pid"] not in answers
        assert server.stop() == 0


def test_burst_is_shared_evenly_and_served_in_parallel() -> None:
    """4 workers, ceiling 1, 40 simultaneous requests of equal loop-blocking work."""
    work = 0.1
    with ServerProcess(
        "tests.apps:app", "--workers", "4", "--max-inflight", "1", "--no-access-log"
    ) as server:
        server.start(wait_ready=4)
        host, port = _address(server)
        request = b"GET /block?s=%.3f HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n" % work
        started = time.monotonic()
        clients = [socket.create_connection((host, port), timeout=60) for _ in range(40)]
        for client in clients:
            client.sendall(request)
        pids = []
        for client in clients:
            with client:
                data = b""
                while chunk := client.recv(65536):
                    data += chunk
            assert data.startswith(b"HTTP/1.1 200"), data
            pids.append(int(data.split(b'"pid": ')[1].split(b",")[0]))
        elapsed = time.monotonic() - started
        counts = sorted(pids.count(pid) for pid in set(pids))
        assert len(counts) == 4 and all(9 <= count <= 11 for count in counts), counts
        serial = 40 * work
        # About a quarter of the serial time; half of it leaves room for a noisy machine.
        assert elapsed < serial / 2, f"{elapsed:.2f}s for {serial:.1f}s of serial work"
        assert server.stop() == 0


def test_request_on_idle_keep_alive_connection_waits_for_a_slot(tmp_path: Path) -> None:
    """A full worker's idle keep-alive connections: their requests wait, none lost or reordered."""
    marker = tmp_path / "release"
    with ServerProcess("tests.apps:app", "--max-inflight", "1", "--no-busy-close") as server:
        server.start()
        address = _address(server)
        idle = [socket.create_connection(address, timeout=60) for _ in range(3)]
        try:
            for conn in idle:  # each serves one request, then sits idle (holding no slot)
                conn.sendall(b"GET /pid HTTP/1.1\r\nHost: h\r\n\r\n")
                assert _read_response(conn)[0].startswith(b"HTTP/1.1 200")
            holder, held = _hold_in_background(server, marker)
            for index, conn in enumerate(idle):
                conn.sendall(b"GET /block?s=0&n=%d HTTP/1.1\r\nHost: h\r\n\r\n" % index)
                # No event tells when the worker has read (and parked) it; a pause gives the
                # arrival order the test then checks.
                time.sleep(0.2)
            assert "pid" not in held
            marker.touch()
            holder.join(60)
            times = []
            for conn in idle:
                head, body = _read_response(conn)
                assert head.startswith(b"HTTP/1.1 200")
                times.append(float(body.split(b'"t": ')[1].rstrip(b"}")))
            assert times == sorted(times), "waiting requests were served out of arrival order"
        finally:
            for conn in idle:
                conn.close()
        assert server.stop() == 0


def test_busy_close_sends_keep_alive_clients_back_to_the_shared_queue(tmp_path: Path) -> None:
    marker = tmp_path / "release"
    with ServerProcess("tests.apps:app", "--max-inflight", "1") as server:
        server.start()
        address = _address(server)
        with socket.create_connection(address, timeout=60) as keeper:
            keeper.sendall(f"GET /hold?f={marker} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
            wait_until(Path(f"{marker}.started").exists)
            # The worker is full: this connection waits in the kernel's accept queue.
            with socket.create_connection(address, timeout=60) as queued:
                queued.sendall(b"GET /pid HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
                marker.touch()
                head, _ = _read_response(keeper)
                assert b"connection: close" in head.lower()
                assert queued.recv(65536).startswith(b"HTTP/1.1 200")
        # Nobody waits now: a keep-alive response stays keep-alive.
        with socket.create_connection(address, timeout=60) as alone:
            alone.sendall(b"GET /block?s=0.01 HTTP/1.1\r\nHost: h\r\n\r\n")
            head, _ = _read_response(alone)
            assert b"connection: close" not in head.lower()
        assert server.stop() == 0


def test_no_busy_close_keeps_connections_alive(tmp_path: Path) -> None:
    marker = tmp_path / "release"
    with ServerProcess("tests.apps:app", "--max-inflight", "1", "--no-busy-close") as server:
        server.start()
        address = _address(server)
        with socket.create_connection(address, timeout=60) as keeper:
            keeper.sendall(f"GET /hold?f={marker} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
            wait_until(Path(f"{marker}.started").exists)
            with socket.create_connection(address, timeout=60) as queued:
                queued.sendall(b"GET /pid HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
                marker.touch()
                head, _ = _read_response(keeper)
                assert b"connection: close" not in head.lower()
                assert queued.recv(65536).startswith(b"HTTP/1.1 200")
        assert server.stop() == 0


def test_draining_worker_stops_accepting_at_once(tmp_path: Path) -> None:
    """A worker told to stop serves what it has; new connections go to its sibling."""
    marker = tmp_path / "release"
    with ServerProcess("tests.apps:app", "--workers", "2", "--max-inflight", "2") as server:
        server.start(wait_ready=2)
        holder, held = _hold_in_background(server, marker)
        busy = int(Path(f"{marker}.started").read_text())
        os.kill(busy, signal.SIGTERM)  # this worker drains: it still has room, but must not accept
        server.wait_for(rf"\[pid {busy}\] draining")
        try:
            with ThreadPoolExecutor(5) as pool:
                answers = list(
                    pool.map(
                        lambda _: httpx.get(server.url + "/pid", timeout=30).json()["pid"],
                        range(5),
                    )
                )
            assert busy not in answers
        finally:
            marker.touch()
            holder.join(60)
        assert held["pid"] == busy  # its in-flight request was finished, not dropped
        server.wait_for(rf"\[pid {busy}\] exited with code 0 unexpectedly; restarting")
        assert server.stop() == 0


def test_silent_connection_takes_no_slot_with_a_ceiling() -> None:
    """--defer-accept auto with a ceiling: a connection that sends nothing stays with the kernel,
    so the only worker's only slot is free for a client that speaks (else: a 60 s wait)."""
    with ServerProcess(
        "tests.apps:app", "--max-inflight", "1", "--timeout-keep-alive", "60"
    ) as server:
        server.start()
        with socket.create_connection(_address(server), timeout=30):
            answer = httpx.get(server.url + "/pid", timeout=10)
        assert answer.status_code == 200
        assert server.stop() == 0


def test_silent_connection_is_accepted_without_a_ceiling() -> None:
    """--defer-accept auto without a ceiling is off: the worker accepts a silent connection
    and closes it when the keep-alive timeout ends (deferred, it would sit in the kernel)."""
    with ServerProcess("tests.apps:app", "--timeout-keep-alive", "1") as server:
        server.start()
        with socket.create_connection(_address(server), timeout=20) as silent:
            assert silent.recv(1024) == b""  # closed by the worker, not left waiting
        assert server.stop() == 0


def _pid_over(sock: socket.socket) -> int:
    """Which worker serves this keep-alive connection (it stays open)."""
    sock.sendall(b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\n")
    return int(json.loads(_read_response(sock)[1])["pid"])


def test_new_connections_go_to_the_worker_with_far_fewer() -> None:
    """No ceiling, 2 workers. While B is stopped, 24 keep-alive connections all go to A (A
    does not wait for good on a sibling that takes nothing). Once B runs again, and A has
    tried it again (BALANCE_RETRY), A leaves new connections to B while it holds more than
    twice B's plus 2: 8 new ones go to B."""
    from asgisup.worker.listener import BALANCE_RETRY

    with ServerProcess("tests.apps:app", "--workers", "2").start(wait_ready=2) as server:
        a, b = server.ready_pids
        held: list[socket.socket] = []
        try:
            os.kill(b, signal.SIGSTOP)
            try:
                for _ in range(24):
                    held.append(socket.create_connection(_address(server), timeout=30))
                    assert _pid_over(held[-1]) == a
            finally:
                os.kill(b, signal.SIGCONT)
            # A took those without pausing for B, whose count did not move; it tries B again
            # after BALANCE_RETRY (B, running again but taking nothing, would never move it).
            time.sleep(10 * BALANCE_RETRY)
            pids = []
            for _ in range(8):  # one at a time: each is served before the next connects
                held.append(socket.create_connection(_address(server), timeout=30))
                pids.append(_pid_over(held[-1]))
            # Each goes to B unless B's loop takes over 2 ms to accept it; one such is allowed.
            assert pids.count(b) >= 7, pids
        finally:
            for sock in held:
                sock.close()
