"""Where the server listens: TCP port 0, a Unix socket, an inherited fd; and what it logs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from asgisup.supervisor.cpus import usable_cpus
from tests.serverproc import ROOT, ServerProcess


def test_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "asgisup.sock"
    with ServerProcess("tests.apps:app", "--uds", str(path)) as server:
        server.start()
        assert server.url == f"unix:{path}"
        transport = httpx.HTTPTransport(uds=str(path))
        with httpx.Client(transport=transport, timeout=30) as client:
            scope = client.get("http://localhost/scope").json()
        assert scope["server"] == [str(path), None] and scope["client"] is None
        assert server.stop() == 0
    assert not path.exists()  # removed on exit


def test_ipv6_loopback() -> None:
    with ServerProcess("tests.apps:app", "--host", "::1") as server:
        server.start()
        port = int(server.url.rpartition(":")[2].rstrip("/"))
        assert server.url == f"http://[::1]:{port}"
        with socket.create_connection(("::1", port), timeout=30) as sock:
            sock.sendall(b"GET /scope HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            local = sock.getsockname()
        scope = json.loads(data.partition(b"\r\n\r\n")[2])
        assert scope["server"] == ["::1", port]
        assert scope["client"] == ["::1", local[1]]
        assert server.stop() == 0


def test_inherited_fd() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    proc = subprocess.Popen(
        [sys.executable, "-m", "asgisup", "tests.apps:app", "--fd", str(fd)],
        cwd=ROOT,
        pass_fds=[fd],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        # Connections queue on the socket even before the workers are up.
        response = httpx.get(f"http://127.0.0.1:{port}/pid", timeout=30)
        assert response.status_code == 200
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
        listener.close()
    assert proc.returncode == 0, err
    assert f"listening on http://127.0.0.1:{port}" in err


def test_root_path() -> None:
    with ServerProcess("tests.apps:app", "--root-path", "/api") as server:
        server.start()
        scope = httpx.get(server.url + "/scope", timeout=30).json()
        assert scope["root_path"] == "/api"
        assert scope["path"] == "/api/scope" and scope["raw_path"] == "/api/scope"
        assert server.stop() == 0


def test_workers_auto_uses_the_usable_cpus() -> None:
    expected = usable_cpus()
    with ServerProcess("tests.apps:app", "--workers", "auto") as server:
        server.start(wait_ready=expected)
        assert f"{expected} worker" in server.log
        assert server.stop() == 0


def test_port_in_use_is_one_clear_line() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        result = subprocess.run(
            [sys.executable, "-m", "asgisup", "tests.apps:app", "--port", str(port)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    finally:
        taken.close()
    assert result.returncode == 1
    assert f"could not listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr
