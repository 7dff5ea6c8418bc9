"""What the kernel knows about the shared listening socket (Linux; None elsewhere)."""

from __future__ import annotations

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


def set_defer_accept(sock: socket.socket, seconds: int) -> bool:
    """Ask the kernel to queue a connection for accept() only once data arrived (or after
    ``seconds``); returns False where TCP_DEFER_ACCEPT does not exist or does not apply."""
    option = getattr(socket, "TCP_DEFER_ACCEPT", None)
    if option is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    sock.setsockopt(socket.IPPROTO_TCP, option, seconds)
    return True
