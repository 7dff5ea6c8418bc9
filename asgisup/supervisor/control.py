"""The supervisor's own small HTTP endpoint: metrics, status and readiness.

Served by the supervisor, not by a worker, so it answers while every worker is full or
blocked. It runs inside the supervisor's select loop without threads: each client gets one
request (8 KiB at most, 5 s to send it) and one response, then the connection is closed.

Routes: ``/metrics`` (Prometheus text), ``/status`` (JSON, read by ``asgisup status``) and
the ``--health-path`` (200 while the server can take work, 503 when it cannot).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from asgisup.supervisor.metrics import Snapshot, render

logger = logging.getLogger("asgisup.error")

MAX_REQUEST = 8192
CLIENT_TIMEOUT = 5.0


def runtime_dir() -> str:
    """Where control sockets live: $XDG_RUNTIME_DIR, else the temporary directory."""
    return os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()


def control_socket_path(pid: int) -> str:
    """The control socket of the supervisor with ``pid``."""
    return os.path.join(runtime_dir(), f"asgisup-{pid}.sock")


def bind_endpoint(where: str) -> socket.socket:
    """A listening socket for ``where``: ``HOST:PORT`` or a Unix socket path (with a ``/``).

    Raises OSError when it cannot be bound.
    """
    if "/" in where:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(where)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(where)
        os.chmod(where, 0o600)
    else:
        host, _, port = where.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, int(port)))
    sock.listen(64)
    sock.setblocking(False)
    return sock


@dataclass(eq=False)
class _Client:
    sock: socket.socket
    opened: float
    data: bytearray = field(default_factory=bytearray)


class ControlServer:
    """Answers on its listening sockets from the supervisor's selector.

    ``snapshot`` gives the current figures; ``health_path`` (or None) and
    ``queue_threshold`` decide readiness.
    """

    def __init__(
        self,
        selector: selectors.BaseSelector,
        snapshot: Callable[[], Snapshot],
        *,
        health_path: str | None,
        queue_threshold: int,
    ) -> None:
        self.selector = selector
        self.snapshot = snapshot
        self.health_path = health_path
        self.queue_threshold = queue_threshold
        self.listeners: list[tuple[socket.socket, str | None]] = []  # (socket, unix path)
        self.clients: dict[socket.socket, _Client] = {}

    def listen(self, sock: socket.socket) -> None:
        path = sock.getsockname() if sock.family == socket.AF_UNIX else None
        self.listeners.append((sock, path or None))
        self.selector.register(sock, selectors.EVENT_READ, lambda: self._accept(sock))

    def describe(self) -> list[str]:
        out = []
        for sock, path in self.listeners:
            if path:
                out.append(f"unix:{path}")
            else:
                host, port = sock.getsockname()[:2]
                out.append(f"http://{host}:{port}")
        return out

    def _accept(self, listener: socket.socket) -> None:
        try:
            sock, _ = listener.accept()
        except OSError:
            return
        sock.setblocking(False)
        client = _Client(sock, time.monotonic())
        self.clients[sock] = client
        self.selector.register(sock, selectors.EVENT_READ, lambda: self._read(client))

    def _read(self, client: _Client) -> None:
        try:
            chunk = client.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._close(client)
            return
        client.data += chunk
        if b"\r\n\r\n" in client.data or b"\n\n" in client.data:
            self._answer(client, bytes(client.data))
        elif len(client.data) > MAX_REQUEST:
            self._answer(client, b"")

    def sweep(self, now: float) -> None:
        """Drop clients that did not send a request in time."""
        for client in list(self.clients.values()):
            if now - client.opened > CLIENT_TIMEOUT:
                self._close(client)

    def _answer(self, client: _Client, request: bytes) -> None:
        status, kind, body = self.respond(request)
        head = (
            f"HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        ).encode("ascii")
        client.sock.settimeout(1.0)
        with contextlib.suppress(OSError):
            client.sock.sendall(head + body)
        self._close(client)

    def respond(self, request: bytes) -> tuple[str, str, bytes]:
        """(status line, content type, body) for the raw ``request``."""
        parts = request.split(b"\r\n", 1)[0].split()
        if len(parts) != 3 or parts[0] not in (b"GET", b"HEAD"):
            return "400 Bad Request", "text/plain", b"GET only\n"
        path = parts[1].split(b"?", 1)[0].decode("latin-1")
        if path == "/metrics":
            return "200 OK", "text/plain; version=0.0.4", render(self.snapshot()).encode()
        if path == "/status":
            data = json.dumps(self.snapshot().as_json()).encode()
            return "200 OK", "application/json", data
        if self.health_path is not None and path == self.health_path:
            if self.snapshot().ready(self.queue_threshold):
                return "200 OK", "text/plain", b"ok\n"
            return "503 Service Unavailable", "text/plain", b"busy\n"
        return "404 Not Found", "text/plain", b"not found\n"

    def _close(self, client: _Client) -> None:
        self.clients.pop(client.sock, None)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(client.sock)
        client.sock.close()

    def close(self) -> None:
        for client in list(self.clients.values()):
            self._close(client)
        for sock, path in self.listeners:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(sock)
            sock.close()
            if path:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        self.listeners.clear()
