"""WebSocket frames byte by byte (RFC 6455 §5.2), for the tests that talk raw sockets."""

from __future__ import annotations

import socket
import struct


def frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True) -> bytes:
    """A client frame (RFC 6455 §5.2)."""
    head = bytes([0x80 * fin | opcode])
    length = len(payload)
    bit = 0x80 if mask else 0
    if length < 126:
        head += bytes([bit | length])
    elif length < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", length)
    if not mask:
        return head + payload
    key = b"\x01\x02\x03\x04"
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_frame(sock: socket.socket, buffer: bytearray) -> tuple[int, bytes]:
    """(opcode, payload) of the next server frame; b"" payload and -1 at EOF."""

    def need(n: int) -> bool:
        while len(buffer) < n:
            chunk = sock.recv(65536)
            if not chunk:
                return False
            buffer.extend(chunk)
        return True

    if not need(2):
        return -1, b""
    opcode, length = buffer[0] & 0x0F, buffer[1] & 0x7F
    start = 2
    if length == 126:
        need(4)
        length, start = struct.unpack("!H", buffer[2:4])[0], 4
    elif length == 127:
        need(10)
        length, start = struct.unpack("!Q", buffer[2:10])[0], 10
    need(start + length)
    payload = bytes(buffer[start : start + length])
    del buffer[: start + length]
    return opcode, payload
