"""The one listening socket every worker shares, created before any worker starts."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat

from asgisup.errors import BindError

logger = logging.getLogger("asgisup.error")

SOMAXCONN_PATH = "/proc/sys/net/core/somaxconn"


def kernel_backlog_cap(path: str = SOMAXCONN_PATH) -> int | None:
    """``net.core.somaxconn``: Linux silently caps ``listen()``'s backlog at it."""
    try:
        with open(path) as file:
            return int(file.read().strip())
    except (OSError, ValueError):
        return None


def warn_if_clamped(backlog: int, cap: int | None) -> None:
    if cap is not None and backlog > cap:
        # A full accept queue drops SYNs and clients retry after ~1 s: the operator should know
        # the queue is smaller than asked for.
        logger.warning(
            "--backlog %d is capped by the kernel at %d (net.core.somaxconn); raise it with "
            "'sysctl -w net.core.somaxconn=%d'",
            backlog,
            cap,
            backlog,
        )


def bind_socket(
    *, host: str, port: int, uds: str | None, fd: int | None, backlog: int
) -> socket.socket:
    """Bind and listen (TCP host:port, a Unix socket path, or an inherited listening fd).

    Raises BindError with the address and the system's reason.
    """
    if fd is not None:
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            raise BindError(f"--fd {fd}: not a usable socket ({exc.strerror or exc})") from None
        # An inherited socket is already listening with its owner's backlog: calling listen()
        # again would change it for every process sharing it.
        sock.setblocking(False)
        return sock
    warn_if_clamped(backlog, kernel_backlog_cap())
    if uds is not None:
        return _bind_unix(uds, backlog)
    return _bind_tcp(host, port, backlog)


def _bind_unix(path: str, backlog: int) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)  # a stale socket from a previous run
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o666)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(f"could not listen on unix:{path}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


def _bind_tcp(host: str, port: int, backlog: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise BindError(f"--host {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise BindError(f"could not listen on {where}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


def describe(sock: socket.socket) -> str:
    """Where ``sock`` listens, as a URL-ish string for the log (real port when 0 was asked)."""
    address = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{address}"
    if sock.family == socket.AF_INET6:
        return f"http://[{address[0]}]:{address[1]}"
    return f"http://{address[0]}:{address[1]}"
