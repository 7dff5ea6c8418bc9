"""What the supervisor keeps about each worker process it started."""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass, field


@dataclass(eq=False)
class WorkerHandle:
    index: int
    pid: int
    slot: int
    generation: int
    report_fd: int | None
    started: float
    request_limit: int | None = None
    ready: bool = False
    retiring: bool = False  # no longer counts for its index: replaced or surplus
    stopping: bool = False  # told to stop (SIGTERM sent)
    kill_at: float | None = None  # SIGKILL then, if still alive
    replaces: int | None = None  # pid of the worker it takes over from, once ready
    report: bytearray = field(default_factory=bytearray)

    @property
    def name(self) -> str:
        return f"Worker {self.index + 1} [pid {self.pid}]"

    def signal(self, signum: int) -> None:
        """Send ``signum``; a worker already gone is reaped by the supervisor's loop."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def stop(self, deadline: float) -> None:
        """SIGTERM (once), and SIGKILL due at ``deadline`` or at an earlier one already set."""
        if not self.stopping:
            self.stopping = True
            self.signal(signal.SIGTERM)
        self.kill_at = deadline if self.kill_at is None else min(self.kill_at, deadline)

    def kill(self) -> None:
        """SIGKILL now; no deadline is left pending."""
        self.kill_at = None
        self.signal(signal.SIGKILL)


def describe_exit(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"
