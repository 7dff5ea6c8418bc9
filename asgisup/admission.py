"""The admission ceiling of one worker, as pure bookkeeping (no sockets, no loop).

The contract (DESIGN.md, "Admission semantics"):

* A worker's *load* counts the connections that hold work: accepted and waiting for a first
  request, or with a request whose response has not finished. An idle keep-alive connection
  between requests is not load.
* With a ceiling C > 0, load never exceeds C. The worker accepts only while load < C and
  re-checks after every single accept; at C it stops polling the listening socket.
* A request that arrives on an idle keep-alive connection of a full worker waits (read paused,
  nothing parsed) until a slot frees. Waiters are served in arrival order, and before any new
  connection is accepted: they reached this worker first.
* A draining worker accepts nothing more, but still serves the requests on the connections it
  already has.
* C = 0 means no ceiling: every request is admitted at once and the worker accepts eagerly.

The I/O shell (``asgisup.worker.listener``) calls these methods and then reconciles the
listening socket's registration with :attr:`Admission.accepting`.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Admission(Generic[T]):
    """Counts the load of one worker against its ceiling and queues the requests that wait.

    ``T`` is whatever identifies a waiting request to the caller (a connection object).
    """

    __slots__ = ("_waiting", "ceiling", "draining", "load")

    def __init__(self, ceiling: int) -> None:
        """Raises ValueError if ``ceiling`` is negative."""
        if ceiling < 0:
            raise ValueError(f"ceiling must be >= 0, got {ceiling}")
        self.ceiling = ceiling
        self.load = 0
        self.draining = False
        self._waiting: deque[T] = deque()

    @property
    def has_room(self) -> bool:
        return self.ceiling == 0 or self.load < self.ceiling

    @property
    def full(self) -> bool:
        return not self.has_room

    @property
    def waiting(self) -> int:
        """How many requests on idle keep-alive connections wait for a slot."""
        return len(self._waiting)

    @property
    def accepting(self) -> bool:
        """Whether the worker should poll the listening socket now."""
        return self.has_room and not self._waiting and not self.draining

    def admit_accepted(self) -> None:
        """Count a connection just accepted from the listening socket.

        Raises RuntimeError if the worker was not accepting: the shell must check
        :attr:`accepting` before every single ``accept()``.
        """
        if not self.accepting:
            raise RuntimeError("accepted a connection while not accepting")
        self.load += 1

    def request(self, waiter: T) -> bool:
        """A request arrived on a connection that holds no slot.

        Returns True if it is admitted now (the load is counted), False if it was queued; a
        queued waiter is returned by a later :meth:`release` once it holds a slot.
        """
        if self.has_room and not self._waiting:
            self.load += 1
            return True
        self._waiting.append(waiter)
        return False

    def release(self) -> T | None:
        """A connection gives its slot back (response finished, or connection closed).

        Returns the waiter that now holds the freed slot, if one was queued, else None.
        Raises RuntimeError if no slot was held.
        """
        if self.load <= 0:
            raise RuntimeError("released a slot that was not held")
        self.load -= 1
        if self._waiting and self.has_room:
            self.load += 1
            return self._waiting.popleft()
        return None

    def cancel(self, waiter: T) -> None:
        """Forget a waiter whose connection closed before it was admitted (no-op if absent)."""
        with contextlib.suppress(ValueError):
            self._waiting.remove(waiter)

    def drain(self) -> None:
        """Stop accepting for good; requests on existing connections are still admitted."""
        self.draining = True


# -- the keep-alive trap ---------------------------------------------------------------------
#
# Behind a proxy with an upstream keep-alive pool most requests arrive on existing connections,
# not through the accept queue, so pausing accept() alone does not balance them: a full
# worker's idle connections trap requests while siblings idle. The remedy measured best on the
# prototype (DESIGN.md): at the end of a response, answer "Connection: close" instead of
# keeping the connection when this worker will still be full, or when connections already
# wait in the shared accept queue. The client learns it in the response, so nothing races;
# its next request opens a new connection, which the shared queue gives to a free worker.
# Closing costs a reconnect, so it is done only while requests are expensive enough for the
# balance to matter: under saturation with cheap requests, closing ~all responses cut
# throughput by 4x on the prototype.


class ServiceTime:
    """A running mean of how long this worker's requests take (exponentially weighted).

    Until it has seen ``1 / WEIGHT`` requests it is their plain average, so the first
    requests count fully instead of being pulled towards zero.
    """

    __slots__ = ("mean", "samples")

    WEIGHT = 0.05  # about the last twenty requests

    def __init__(self) -> None:
        self.mean = 0.0
        self.samples = 0

    def add(self, seconds: float) -> float:
        self.mean = self.peek(seconds)
        self.samples += 1
        return self.mean

    def peek(self, seconds: float) -> float:
        """The mean :meth:`add` would make of ``seconds``, leaving this one unchanged."""
        if self.samples * self.WEIGHT < 1.0:
            return self.mean + (seconds - self.mean) / (self.samples + 1)
        return self.mean + self.WEIGHT * (seconds - self.mean)


def busy_close(
    admission: Admission[T],
    mean_service: float,
    min_service: float,
    queue_depth: Callable[[], int],
) -> bool:
    """Whether the response now being sent should close its connection instead of keeping it.

    ``admission.load`` still counts the slot of that response. ``queue_depth`` is asked only
    when the worker itself has room, since reading it costs a system call.
    """
    if admission.ceiling == 0 or mean_service < min_service:
        return False
    if admission.load - 1 + admission.waiting >= admission.ceiling:
        return True  # still full after this response: the next request would wait here
    return queue_depth() > 0  # others wait in the shared queue: let this client queue too
