"""Supervision decisions without processes: how long to wait before restarting a worker."""

from __future__ import annotations

# A worker that lived this long counts as healthy: its next crash starts the back-off afresh.
HEALTHY_UPTIME = 10.0
FIRST_RETRY = 0.5
MAX_RETRY = 30.0


class RestartBackoff:
    """Capped exponential back-off for one worker slot.

    The first unexpected exit is restarted at once (a one-off crash costs no capacity);
    consecutive exits of workers that die young wait 0.5 s, 1 s, 2 s ... up to 30 s, so a
    worker that crashes right after every boot neither spins the supervisor nor floods the log.
    """

    __slots__ = ("failures",)

    def __init__(self) -> None:
        self.failures = 0

    def delay(self, uptime: float) -> float:
        """Record an unexpected exit after ``uptime`` seconds; return the delay before restart."""
        if uptime >= HEALTHY_UPTIME:
            self.failures = 0
        self.failures += 1
        if self.failures == 1:
            return 0.0
        return min(FIRST_RETRY * 2.0 ** (self.failures - 2), MAX_RETRY)
