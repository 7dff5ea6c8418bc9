"""What the kernel knows about the shared listening socket (Linux; None elsewhere)."""

from __future__ import annotations

import ipaddress
import socket
import struct

# struct tcp_info (linux/tcp.h): on a LISTEN socket, tcpi_unacked (u32 at offset 24) is the
# current accept-queue length and tcpi_sacked (offset 28) its limit; `ss -lnt` shows the same
# numbers as Recv-Q / Send-Q.
_TCP_INFO = getattr(socket, "TCP_INFO", None)
_QUEUE = struct.Struct("=II")
_QUEUE_OFFSET = 24


def accept_queue(sock: socket.socket) -> tuple[int, int] | None:
    """(connections waiting to be accepted, queue limit), or None if the kernel cannot say."""
    if _TCP_INFO is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 104)
    except OSError:
        return None
    if len(info) < _QUEUE_OFFSET + _QUEUE.size:
        return None
    depth, limit = _QUEUE.unpack_from(info, _QUEUE_OFFSET)
    return depth, limit


def shared_local_address(sock: socket.socket) -> tuple[str, int | None] | None:
    """The local address of every connection accepted on ``sock``, as an ASGI ``server``:
    (host, port) when bound to one IP address, (path, None) for a Unix socket; None when each
    connection has its own (a wildcard bind: the address the client connected to)."""
    name = sock.getsockname()
    if isinstance(name, str):
        return (name, None) if name else None
    if not isinstance(name, tuple):
        return None  # an abstract Unix socket's bytes: asked per connection, like before
    host = str(name[0])
    try:
        if ipaddress.ip_address(host.partition("%")[0]).is_unspecified:
            return None
    except ValueError:
        return None
    return host, int(name[1])


def set_defer_accept(sock: socket.socket, seconds: int) -> bool:
    """Ask the kernel to queue a connection for accept() only once data arrived (or after
    ``seconds``); returns False where TCP_DEFER_ACCEPT does not exist or does not apply."""
    option = getattr(socket, "TCP_DEFER_ACCEPT", None)
    if option is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    sock.setsockopt(socket.IPPROTO_TCP, option, seconds)
    return True
