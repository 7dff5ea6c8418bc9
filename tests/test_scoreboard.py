"""The shared-memory scoreboard: slots written by one process are read by another."""

from __future__ import annotations

import os
import sys
import time

import pytest

from asgisup.scoreboard import Scoreboard, State


def test_claim_write_read_free() -> None:
    board = Scoreboard(2)
    first = board.claim(generation=3, ceiling=1)
    second = board.claim(generation=3, ceiling=1)
    assert {first, second} == {0, 1} and board.free_slots == 0
    with pytest.raises(LookupError):
        board.claim(generation=3, ceiling=1)
    slot = board.read(first)
    assert (slot.generation, slot.ceiling, slot.state) == (3, 1, State.BOOTING)
    board.free(first)
    assert board.read(first).state == State.FREE and board.free_slots == 1
    assert board.claim(generation=4, ceiling=2) == first
    board.close()


def test_a_forked_writer_is_seen_by_the_parent() -> None:
    board = Scoreboard(4)
    index = board.claim(generation=7, ceiling=2)
    pid = os.fork()
    if pid == 0:  # the worker's side
        writer = board.writer(index)
        writer.adopt()
        writer.state = State.READY
        writer.load = 2
        writer.accepted = 5
        writer.connections = 3
        writer.serving("GET", "/é" + "x" * 200, time.monotonic())
        writer.publish()
        os._exit(0)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    slot = board.read(index)
    assert (slot.pid, slot.generation, slot.ceiling) == (pid, 7, 2)
    assert (slot.state, slot.load, slot.accepted, slot.requests) == (State.READY, 2, 5, 1)
    assert slot.connections == 3
    assert slot.request.startswith("GET /éxxx") and len(slot.request.encode()) <= 96
    assert 0 <= slot.blocked_for(time.monotonic()) < 60
    board.close()


def test_siblings_see_the_fewest_connections_of_the_workers_that_accept() -> None:
    """Each worker publishes its open connections while it accepts; a
    worker sees the fewest among the others, never its own, and nothing from a free slot."""
    board = Scoreboard(5)
    writers = [board.writer(board.claim(generation=1, ceiling=0)) for _ in range(4)]
    assert writers[0].fewest_open() is None  # nobody accepts yet
    writers[0].accepting(0)
    assert writers[0].fewest_open() is None  # its own word does not count
    assert writers[1].fewest_open() == 0  # a sibling with none: 0, not "nobody"
    writers[2].accepting(7)
    writers[3].accepting(4)
    writers[0].accepting(9)
    assert [w.fewest_open() for w in writers] == [4, 4, 4, 7]
    writers[3].accepting(None)  # stops accepting (full, draining)
    assert writers[0].fewest_open() == 7
    writers[3].publish()  # the heartbeat's write leaves the word alone
    assert writers[0].fewest_open() == 7
    board.free(2)  # its worker is gone
    assert writers[0].fewest_open() is None and writers[3].fewest_open() == 9
    board.close()


def test_reader_never_sees_a_half_written_slot() -> None:
    """Many writes from a child while the parent reads: every copy is one whole write."""
    board = Scoreboard(1)
    index = board.claim(generation=1, ceiling=1)
    pid = os.fork()
    if pid == 0:
        writer = board.writer(index)
        writer.adopt()
        for n in range(1, 20001):
            writer.load = writer.accepted = writer.requests = n
            writer.publish()
            # Sharing a core with the reader (a busy machine), the writer must not be the only
            # one to run between its writes: the reader would meet odd sequence numbers for
            # READ_ATTEMPTS tries and get the last copy as is (the killed-writer fallback).
            os.sched_yield()
        os._exit(0)
    seen = 0
    while os.waitpid(pid, os.WNOHANG)[0] == 0:
        slot = board.read(index)
        assert slot.load == slot.accepted == slot.requests
        seen += 1
    assert board.read(index).requests == 20000 and seen > 0
    board.close()


def test_a_writer_killed_mid_write_does_not_hang_the_reader() -> None:
    board = Scoreboard(1)
    index = board.claim(generation=1, ceiling=1)
    board._map[0:4] = (7).to_bytes(4, sys.byteorder)  # odd: a write that never finished
    assert board.read(index).generation == 1  # returned after bounded retries
    board.close()


def test_latest_request_names_what_a_blocked_loop_is_likely_stuck_in() -> None:
    board = Scoreboard(1)
    try:
        index = board.claim(1, 0)
        assert board.read(index).latest_request(10.0) == " before its first request"
        writer = board.writer(index)
        writer.serving("GET", "/slow", 7.5)
        assert board.read(index).latest_request(10.0) == (
            "; its latest request: GET /slow, started 2.5s ago"
        )
    finally:
        board.close()
