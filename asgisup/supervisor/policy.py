"""Supervision decisions without processes: when to restart, when to recycle a worker."""

from __future__ import annotations

import random

# A worker that lived this long counts as healthy: its next crash starts the back-off afresh.
HEALTHY_UPTIME = 10.0
FIRST_RETRY = 0.5
MAX_RETRY = 30.0
MIB = 1024 * 1024


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


class QueueWatch:
    """Warns when the shared accept queue stays more than half full.

    A queue that fills up drops new connections (clients retry after ~1 s), so a queue that
    stays deep means the server needs more workers or a higher ceiling. One sample a second;
    a warning once the queue has been over half full for ``patience`` samples in a row, then
    at most every ``quiet`` seconds.
    """

    __slots__ = ("_last_warning", "_streak", "patience", "quiet")

    def __init__(self, patience: int = 5, quiet: float = 60.0) -> None:
        self.patience = patience
        self.quiet = quiet
        self._streak = 0
        self._last_warning: float | None = None

    def sample(self, depth: int, limit: int, now: float) -> str | None:
        """Record one reading; return the warning to log, if one is due."""
        if limit <= 0 or depth * 2 <= limit:
            self._streak = 0
            return None
        self._streak += 1
        if self._streak < self.patience:
            return None
        if self._last_warning is not None and now - self._last_warning < self.quiet:
            return None
        self._last_warning = now
        return (
            f"The accept queue has stayed more than half full ({depth} of {limit} connections "
            "waiting): add workers (--workers) or raise the ceiling (--max-inflight); once it is "
            "full, new connections are dropped and clients retry after about a second"
        )


def request_limit(max_requests: int, jitter: int, rng: random.Random) -> int | None:
    """How many requests one worker serves before it is recycled (None: no limit).

    ``max_requests`` plus or minus up to ``jitter``, at least 1, so workers started together
    are not all recycled at the same moment.
    """
    if max_requests <= 0:
        return None
    return max(1, max_requests + rng.randint(-jitter, jitter))


def recycle_reason(
    requests: int, limit: int | None, resident: int | None, max_memory_mib: int
) -> tuple[str, str] | None:
    """Why a worker that has served ``requests`` and holds ``resident`` bytes should be
    replaced: (the restart reason metrics count, the words the log says), or None."""
    if limit is not None and requests >= limit:
        return "max_requests", f"served {requests} requests (--max-requests)"
    if max_memory_mib and resident is not None and resident > max_memory_mib * MIB:
        return "max_memory", f"uses {resident / MIB:.0f} MiB (--max-worker-memory {max_memory_mib})"
    return None
