"""The supervisor's signal plumbing: handlers that only record, a wake-up pipe for its loop.

What the supervisor *does* on a signal is decided in its loop (``arbiter``); this module only
gets signals there safely: a handler appends the signal number to :attr:`SignalInbox.pending`
and Python writes a byte to the wake-up pipe (``signal.set_wakeup_fd``), so the loop's
``select`` returns at once.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
from collections import deque
from collections.abc import Iterator
from types import FrameType

HANDLED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGCHLD,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGUSR1,
)


class SignalInbox:
    """The signals of :data:`HANDLED`, received while :meth:`installed` is in effect."""

    def __init__(self) -> None:
        self.pending: deque[int] = deque()
        self.wake_r, self.wake_w = os.pipe()

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.pending.append(signum)

    @contextlib.contextmanager
    def installed(self, selector: selectors.BaseSelector) -> Iterator[None]:
        """Record the handled signals, and register the wake-up pipe with ``selector``; the
        previous handlers come back on exit."""
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)
        selector.register(self.wake_r, selectors.EVENT_READ)
        previous_fd = signal.set_wakeup_fd(self.wake_w)
        previous = {signum: signal.signal(signum, self._record) for signum in HANDLED}
        try:
            yield
        finally:
            signal.set_wakeup_fd(previous_fd)
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def drain_wakeups(self) -> None:
        """Empty the wake-up pipe (the signals themselves are in :attr:`pending`)."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self.wake_r, 4096):
                pass

    @contextlib.contextmanager
    def held(self) -> Iterator[set[int | signal.Signals]]:
        """Hold the handled signals pending (around a fork); yields the mask to restore.

        A stop signal arriving mid-fork must reach the supervisor, not a child still running
        the supervisor's handlers: both hold it until they are ready."""
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
        try:
            yield mask
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def reset_in_child(self) -> None:
        """In a fresh worker: the supervisor's handlers and pipe go (the signals stay held
        until the caller restores the mask of :meth:`held`)."""
        signal.set_wakeup_fd(-1)
        for signum in HANDLED:
            signal.signal(signum, signal.SIG_DFL)
        # Ctrl-C reaches the whole process group; the supervisor alone decides what it means.
        # The others are for the supervisor; a worker that boots must not die or stop of them.
        for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(signum, signal.SIG_IGN)
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # the worker's loop handles it once ready
        self.close()

    def close(self) -> None:
        for fd in (self.wake_r, self.wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
