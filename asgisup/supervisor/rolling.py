"""A rolling restart's bookkeeping: which workers a SIGHUP still has to replace, one at a time.

The supervisor starts a replacement, waits for it to be ready, stops the worker it replaces
and only then goes on with the next; a replacement that cannot boot abandons the restart and
the running workers keep serving (docs/operations.md).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Mapping

from asgisup.supervisor.handles import WorkerHandle

logger = logging.getLogger("asgisup.error")


class RollingRestart:
    __slots__ = ("_waiting", "booting")

    def __init__(self) -> None:
        self._waiting: deque[int] = deque()  # pids still to replace, in order
        self.booting: int | None = None  # pid of the replacement being booted

    def begin(self, pids: Iterable[int]) -> None:
        """Replace these workers (a restart under way starts over with them)."""
        self._waiting = deque(pid for pid in pids if pid != self.booting)

    def stop(self) -> None:
        """Replace no more workers (the server is stopping)."""
        self._waiting.clear()

    def next(self, workers: Mapping[int, WorkerHandle], generation: int) -> WorkerHandle | None:
        """The worker to replace now: None while a replacement boots, or when none is left."""
        if self.booting is not None and self.booting in workers:
            return None
        self.booting = None
        while self._waiting:
            old = workers.get(self._waiting.popleft())
            if old is not None and not old.retiring and old.generation < generation:
                return old
            if not self._waiting:
                _done(generation)
        return None

    def ready(self, pid: int, generation: int) -> None:
        """Worker ``pid`` is ready to serve: if it was the replacement booting, go on."""
        if pid == self.booting:
            self.booting = None
            if not self._waiting:
                _done(generation)

    def abandon(self, pid: int) -> bool:
        """Replacement ``pid`` failed: True if it belonged to a restart, now given up."""
        if pid != self.booting and not self._waiting:
            return False
        self._waiting.clear()
        self.booting = None
        return True


def _done(generation: int) -> None:
    logger.info("Rolling restart done: every worker is of generation %d", generation)
