"""The admission ceiling as pure bookkeeping: hypothesis drives it like a worker would."""

from __future__ import annotations

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from asgisup.admission import Admission


class AdmissionMachine(RuleBasedStateMachine):
    """Connections are accepted, finish requests, send requests while idle, close, drain.

    The model: ``holding`` connections hold a slot, ``queued`` wait in FIFO order, ``idle``
    hold nothing. Invariants state the contract of DESIGN.md.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ceiling = 0
        self.admission: Admission[int] = Admission(0)
        self.holding: set[int] = set()
        self.queued: list[int] = []
        self.idle: set[int] = set()
        self.next_id = 0
        self.ever_queued: set[int] = set()
        self.admitted_from_queue: list[int] = []

    @rule(ceiling=st.integers(min_value=0, max_value=4))
    @precondition(lambda self: self.next_id == 0)
    def set_ceiling(self, ceiling: int) -> None:
        self.ceiling = ceiling
        self.admission = Admission(ceiling)

    def _give_slot(self, waiter: int | None) -> None:
        if waiter is not None:
            assert waiter == self.queued.pop(0), "waiters must be admitted in arrival order"
            self.holding.add(waiter)
            self.admitted_from_queue.append(waiter)

    @rule()
    def accept(self) -> None:
        if not self.admission.accepting:
            with pytest.raises(RuntimeError):
                self.admission.admit_accepted()
            return
        self.admission.admit_accepted()
        self.holding.add(self.next_id)
        self.next_id += 1

    @rule(data=st.data())
    @precondition(lambda self: self.holding)
    def finish_response(self, data: st.DataObject) -> None:
        conn = data.draw(st.sampled_from(sorted(self.holding)))
        self.holding.remove(conn)
        self.idle.add(conn)
        self._give_slot(self.admission.release())

    @rule(data=st.data())
    @precondition(lambda self: self.idle)
    def request_on_idle(self, data: st.DataObject) -> None:
        conn = data.draw(st.sampled_from(sorted(self.idle)))
        self.idle.remove(conn)
        had_room = self.admission.has_room and not self.queued
        if self.admission.request(conn):
            assert had_room
            self.holding.add(conn)
        else:
            assert not had_room
            self.queued.append(conn)
            self.ever_queued.add(conn)

    @rule(data=st.data())
    @precondition(lambda self: self.holding)
    def close_holding(self, data: st.DataObject) -> None:
        conn = data.draw(st.sampled_from(sorted(self.holding)))
        self.holding.remove(conn)
        self._give_slot(self.admission.release())

    @rule(data=st.data())
    @precondition(lambda self: self.queued)
    def close_queued(self, data: st.DataObject) -> None:
        conn = data.draw(st.sampled_from(self.queued))
        self.queued.remove(conn)
        self.ever_queued.discard(conn)
        self.admission.cancel(conn)

    @rule()
    def drain(self) -> None:
        self.admission.drain()

    @invariant()
    def load_is_the_slots_held(self) -> None:
        assert self.admission.load == len(self.holding)
        assert self.admission.waiting == len(self.queued)

    @invariant()
    def load_never_exceeds_ceiling(self) -> None:
        if self.ceiling:
            assert self.admission.load <= self.ceiling

    @invariant()
    def paused_exactly_when_full_or_waiting(self) -> None:
        full = self.ceiling > 0 and len(self.holding) >= self.ceiling
        expected = not (full or self.queued or self.admission.draining)
        assert self.admission.accepting == expected

    @invariant()
    def nobody_waits_while_there_is_room(self) -> None:
        # Every waiting request is admitted as soon as a slot frees: a queue with room to
        # spare would mean a request waits for nothing.
        if self.queued:
            assert self.admission.full

    def teardown(self) -> None:
        # Liveness: finishing every request in flight admits every waiter, in order.
        while self.holding:
            conn = min(self.holding)
            self.holding.remove(conn)
            self._give_slot(self.admission.release())
        assert not self.queued
        assert self.admission.load == 0


TestAdmission = AdmissionMachine.TestCase


def test_negative_ceiling_is_refused() -> None:
    with pytest.raises(ValueError, match="ceiling"):
        Admission(-1)


def test_release_without_slot_is_a_bug() -> None:
    with pytest.raises(RuntimeError):
        Admission[object](1).release()


def test_no_ceiling_admits_everything() -> None:
    admission: Admission[str] = Admission(0)
    for _ in range(1000):
        admission.admit_accepted()
    assert admission.request("conn")
    assert admission.accepting and admission.load == 1001


def test_waiter_goes_before_new_accepts() -> None:
    admission: Admission[str] = Admission(1)
    admission.admit_accepted()
    assert not admission.request("keep-alive")
    assert not admission.accepting
    assert admission.release() == "keep-alive"
    assert not admission.accepting  # the waiter took the slot, not the listener
    assert admission.release() is None
    assert admission.accepting
