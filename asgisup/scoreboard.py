"""The scoreboard: one slot of shared memory per worker, written by the worker, read by the
supervisor (Apache httpd's scoreboard is the model).

The supervisor maps an anonymous shared region before forking, so every worker inherits it.
A worker writes only its own slot; the supervisor claims a slot for a worker before forking
it and frees it after reaping. Readers never block writers: each slot carries a sequence
number that is odd while a write is under way (a seqlock), and a reader retries until it has
a copy taken between two equal even numbers.

Times are ``time.monotonic()``: CLOCK_MONOTONIC is system-wide on Linux, so a worker's
heartbeat and the supervisor's clock compare directly.
"""

from __future__ import annotations

import bisect
import enum
import mmap
import os
import struct
import time
from dataclasses import dataclass

#: Upper bounds (seconds) of the request latency histogram's buckets; the last is +Inf.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_CLASSES = 5  # responses by status class: 1xx .. 5xx
_N_BUCKETS = len(LATENCY_BUCKETS) + 1
# seq, pid, generation, state, load, ceiling, accepted, requests, heartbeat, request_at,
# request, full_seconds, latency_sum, responses by class, latency buckets (not cumulative),
# open websockets, open connections
_SLOT = struct.Struct(f"=IiIIIIQQdd96sdd{_CLASSES}Q{_N_BUCKETS}QII")
_REQUEST_BYTES = 96
# request_at and request, written alone for every request (see SlotWriter.serving)
_REQUEST = struct.Struct(f"=d{_REQUEST_BYTES}s")
_REQUEST_OFFSET = struct.calcsize("=IiIIIIQQd")
_SEQ = struct.Struct("=I")
SLOT_SIZE = 320
READ_ATTEMPTS = 1000
# A worker's open connections plus one while it accepts, 0 while it does not (full,
# draining, and in a free slot); written alone on every change, read by its siblings (the
# balance of connections between workers, docs/admission.md). An aligned 4-byte word, outside the
# sequence lock: a reader wants a recent value, not one consistent with the other fields.
_OPEN = struct.Struct("=I")
_OPEN_OFFSET = SLOT_SIZE - _OPEN.size
assert _SLOT.size <= _OPEN_OFFSET


class State(enum.IntEnum):
    FREE = 0
    BOOTING = 1
    READY = 2
    DRAINING = 3


@dataclass(frozen=True, slots=True)
class Slot:
    """A consistent copy of one worker's slot."""

    pid: int
    generation: int
    state: State
    load: int  # connections holding work (see docs/admission.md)
    ceiling: int
    accepted: int  # connections accepted since boot
    requests: int  # requests started since boot
    heartbeat: float  # monotonic time the event loop last ran the heartbeat callback
    request_at: float  # monotonic time the latest request started
    request: str  # "METHOD /path" of the latest request to start
    full_seconds: float = 0.0  # time spent at its ceiling, accepting nothing
    latency_sum: float = 0.0  # seconds, over all responses counted in ``latency``
    responses: tuple[int, ...] = (0,) * _CLASSES  # by status class, 1xx first
    latency: tuple[int, ...] = (0,) * _N_BUCKETS  # responses per LATENCY_BUCKETS bucket, +Inf last
    websockets: int = 0  # open WebSockets (they hold no slot of the ceiling)
    connections: int = 0  # open connections, idle keep-alive ones too

    def blocked_for(self, now: float) -> float:
        """How long the worker's event loop has not beaten."""
        return max(0.0, now - self.heartbeat)

    def latest_request(self, now: float) -> str:
        """The request a blocked loop is likely stuck in, for the watchdog's message."""
        if not self.request:
            return " before its first request"
        return f"; its latest request: {self.request}, started {now - self.request_at:.1f}s ago"


class Scoreboard:
    """``slots`` slots in memory shared with every process forked after it was made."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._map = mmap.mmap(-1, slots * SLOT_SIZE)
        self._used = [False] * slots

    def claim(self, generation: int, ceiling: int) -> int:
        """Reserve a free slot for a worker about to be forked; returns its index.

        Raises LookupError when every slot is taken.
        """
        for index, used in enumerate(self._used):
            if not used:
                self._used[index] = True
                writer = SlotWriter(self, index)
                writer.generation = generation
                writer.ceiling = ceiling
                writer.state = State.BOOTING
                writer.heartbeat = time.monotonic()
                writer.publish()
                return index
        raise LookupError("every scoreboard slot is taken")

    def free(self, index: int) -> None:
        self._used[index] = False
        self._map[index * SLOT_SIZE : (index + 1) * SLOT_SIZE] = bytes(SLOT_SIZE)

    @property
    def free_slots(self) -> int:
        return self._used.count(False)

    def read(self, index: int) -> Slot:
        """A consistent copy of slot ``index`` (retries while its worker is writing).

        A worker killed in the middle of a write leaves its sequence number odd for good: after
        READ_ATTEMPTS tries the last copy is returned as it is, so the reader never hangs.
        """
        offset = index * SLOT_SIZE
        for _ in range(READ_ATTEMPTS):
            fields = _SLOT.unpack_from(self._map, offset)
            (seq,) = _SEQ.unpack_from(self._map, offset)
            if seq == fields[0] and not seq & 1:
                break
            os.sched_yield()
        _, pid, generation, state, load, ceiling, accepted, requests, beat, at, request = fields[
            :11
        ]
        full, latency_sum = fields[11:13]
        responses = fields[13 : 13 + _CLASSES]
        return Slot(
            pid,
            generation,
            State(state),
            load,
            ceiling,
            accepted,
            requests,
            beat,
            at,
            request.rstrip(b"\0").decode("utf-8", "replace"),
            full,
            latency_sum,
            tuple(responses),
            tuple(fields[13 + _CLASSES : 13 + _CLASSES + _N_BUCKETS]),
            fields[-2],
            fields[-1],
        )

    def close(self) -> None:
        self._map.close()

    def writer(self, index: int) -> SlotWriter:
        return SlotWriter(self, index)


class SlotWriter:
    """A worker's handle on its own slot: set the fields, then :meth:`publish`."""

    __slots__ = (
        "_map",
        "_offset",
        "_open_at",
        "_seq",
        "_siblings",
        "accepted",
        "ceiling",
        "connections",
        "full_seconds",
        "generation",
        "heartbeat",
        "latency",
        "latency_sum",
        "load",
        "pid",
        "request",
        "request_at",
        "requests",
        "responses",
        "state",
        "websockets",
    )

    def __init__(self, board: Scoreboard, index: int) -> None:
        self._map = board._map
        self._offset = index * SLOT_SIZE
        self._open_at = self._offset + _OPEN_OFFSET
        # Every other slot's open-connections word in one unpack (fewest_open).
        word = f"{_OPEN_OFFSET}xI"
        self._siblings = struct.Struct(
            f"={word * index}{SLOT_SIZE}x{word * (board.slots - index - 1)}"
        )
        (self._seq,) = _SEQ.unpack_from(self._map, self._offset)
        self._seq += self._seq & 1
        self.pid = 0
        self.generation = 0
        self.state = State.FREE
        self.load = 0
        self.ceiling = 0
        self.accepted = 0
        self.requests = 0
        self.heartbeat = 0.0
        self.request_at = 0.0
        self.request = b""
        self.full_seconds = 0.0
        self.latency_sum = 0.0
        self.responses = [0] * _CLASSES
        self.latency = [0] * _N_BUCKETS
        self.websockets = 0
        self.connections = 0

    def adopt(self) -> None:
        """In the worker: take over what the supervisor wrote at claim time."""
        board_view = _SLOT.unpack_from(self._map, self._offset)
        self.generation, self.ceiling = board_view[2], board_view[5]
        self.pid = os.getpid()
        self.heartbeat = time.monotonic()

    def serving(self, method: str, path: str, now: float) -> None:
        """Record the request that starts now (the watchdog names it if the loop blocks).

        Written at once, outside the sequence lock, because the heartbeat that publishes the
        rest may never come: this is the request a blocked loop is stuck in. Nobody needs it
        consistent with the other fields; the watchdog reads it after the loop has been
        silent for seconds, when nothing writes it.
        """
        self.requests += 1
        self.request_at = now
        self.request = f"{method} {path}".encode("utf-8", "replace")[:_REQUEST_BYTES]
        _REQUEST.pack_into(self._map, self._offset + _REQUEST_OFFSET, now, self.request)

    def accepting(self, connections: int | None) -> None:
        """Publish this worker's open connections while it accepts; None while it does not."""
        _OPEN.pack_into(self._map, self._open_at, 0 if connections is None else connections + 1)

    def fewest_open(self) -> int | None:
        """The fewest open connections among the siblings that accept, or None when none
        does."""
        words = [word for word in self._siblings.unpack_from(self._map) if word]
        return min(words) - 1 if words else None

    def responded(self, status: int, seconds: float) -> None:
        """Count a response (published with the next heartbeat)."""
        if 100 <= status <= 599:
            self.responses[status // 100 - 1] += 1
        self.latency[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def publish(self) -> None:
        busy = self._seq + 1  # odd: a write is under way
        _SEQ.pack_into(self._map, self._offset, busy)
        _SLOT.pack_into(
            self._map,
            self._offset,
            busy,
            self.pid,
            self.generation,
            self.state,
            self.load,
            self.ceiling,
            self.accepted,
            self.requests,
            self.heartbeat,
            self.request_at,
            self.request,
            self.full_seconds,
            self.latency_sum,
            *self.responses,
            *self.latency,
            self.websockets,
            self.connections,
        )
        self._seq = busy + 1
        _SEQ.pack_into(self._map, self._offset, self._seq)
