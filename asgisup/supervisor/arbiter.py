"""The supervisor's main loop: fork workers, watch them, restart the ones that die, stop.

Contracts (gunicorn's arbiter is the classic model):

* Signal handlers only record the signal; this loop acts on it. The handlers write to a
  wake-up pipe (``signal.set_wakeup_fd``) so the loop's ``select`` returns at once.
* Every child is reaped with ``waitpid(-1, WNOHANG)``, workers and strays alike, so the
  supervisor can run as a container's PID 1.
* A worker that cannot boot (its report says ``F``) stops the whole server with that error,
  shown once; restarting it would only fail again.
* Graceful first, forceful on a deadline: SIGTERM, then SIGKILL once
  ``timeout_graceful_shutdown`` (plus a margin for lifespan shutdown) has passed. A second
  SIGINT (Ctrl-C twice) kills at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from types import FrameType
from typing import NoReturn

from asgisup.config import Config
from asgisup.errors import BootError
from asgisup.sockinfo import accept_queue
from asgisup.supervisor.policy import QueueWatch, RestartBackoff
from asgisup.worker.process import EXIT_BOOT_FAILED, FAILED, READY, WorkerSpec, child_main

logger = logging.getLogger("asgisup.error")

# Time a worker gets for lifespan shutdown and exit after its graceful deadline.
STOP_MARGIN = 5.0
_HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP)


@dataclass(eq=False)
class WorkerHandle:
    index: int
    pid: int
    report_fd: int | None
    started: float
    ready: bool = False
    stopping: bool = False
    report: bytearray = field(default_factory=bytearray)


def describe_exit(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


class Supervisor:
    """Runs ``workers`` worker processes on ``sock`` until told to stop."""

    def __init__(self, config: Config, sock: socket.socket, app: object, workers: int) -> None:
        self.config = config
        self.sock = sock
        self.app = app
        self.size = workers
        self.workers: dict[int, WorkerHandle] = {}  # by pid
        self._backoff = [RestartBackoff() for _ in range(workers)]
        self._respawns: list[tuple[float, int]] = []  # (due, index)
        self._signals: deque[int] = deque()
        self._selector = selectors.DefaultSelector()
        self._stopping = False
        self._deadline: float | None = None
        self._forced = False
        self._boot_error: str | None = None
        self._queue_watch = QueueWatch()
        self._next_sample = 0.0
        self._lifeline_r, self._lifeline_w = os.pipe()
        self._wake_r, self._wake_w = os.pipe()

    # -- public --------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped; returns 0 after a clean stop, 1 after a forced one.

        Raises BootError with the app's error when a worker could not boot.
        """
        previous = self._install_signals()
        try:
            for index in range(self.size):
                self._spawn(index)
            while not (self._stopping and not self.workers):
                self._selector_wait()
                self._handle_signals()
                self._reap()
                self._respawn_due()
                self._enforce_deadline()
                self._watch_queue()
        finally:
            self._restore_signals(previous)
            self._close()
        if self._boot_error is not None:
            raise BootError(self._boot_error)
        return 1 if self._forced else 0

    def stop(self) -> None:
        """Begin a graceful stop: every worker drains and exits."""
        if self._stopping:
            return
        self._stopping = True
        self._respawns.clear()
        self._deadline = time.monotonic() + self.config.timeout_graceful_shutdown + STOP_MARGIN
        for handle in self.workers.values():
            self._signal_worker(handle, signal.SIGTERM)
            handle.stopping = True

    # -- signals -------------------------------------------------------------------------

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signum)

    def _install_signals(self) -> dict[int, object]:
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        previous: dict[int, object] = {-1: signal.set_wakeup_fd(self._wake_w)}
        for signum in _HANDLED:
            previous[signum] = signal.signal(signum, self._record)
        return previous

    def _restore_signals(self, previous: dict[int, object]) -> None:
        signal.set_wakeup_fd(previous.pop(-1))  # type: ignore[arg-type]
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def _handle_signals(self) -> None:
        while self._signals:
            signum = self._signals.popleft()
            if signum in (signal.SIGTERM, signal.SIGINT):
                if self._stopping and signum == signal.SIGINT:
                    logger.warning("Second interrupt: stopping workers now")
                    self._kill_all()
                elif not self._stopping:
                    logger.info(
                        "Shutting down (%s): finishing in-flight requests, up to %ss",
                        signal.Signals(signum).name,
                        self.config.timeout_graceful_shutdown,
                    )
                    self.stop()
            elif signum == signal.SIGHUP:
                logger.warning("SIGHUP received: rolling restart is not supported yet; ignored")

    # -- workers -------------------------------------------------------------------------

    def _spawn(self, index: int) -> None:
        report_r, report_w = os.pipe()
        # A stop signal arriving mid-fork must reach the supervisor, not a child still
        # running the supervisor's handlers: both hold it pending until they are ready.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED)
        try:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child's coverage is collected by the child
                self._become_worker(index, report_r, report_w, mask)
            os.close(report_w)
            handle = WorkerHandle(index, pid, report_fd=report_r, started=time.monotonic())
            self.workers[pid] = handle
            self._selector.register(report_r, selectors.EVENT_READ, handle)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        logger.info("Started worker %d [pid %d]", index + 1, pid)

    def _become_worker(
        self, index: int, report_r: int, report_w: int, mask: set[int | signal.Signals]
    ) -> NoReturn:  # pragma: no cover - runs in the child
        os.close(report_r)
        spec = WorkerSpec(
            index=index + 1,
            config=self.config,
            sock=self.sock,
            app=self.app,
            report_fd=report_w,
            lifeline_fd=self._lifeline_r,
        )

        def close_in_child() -> None:
            self._close_in_child()
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

        child_main(spec, close_in_child)

    def _close_in_child(self) -> None:
        """In a fresh child: drop the supervisor's fds and signal plumbing."""
        signal.set_wakeup_fd(-1)
        for signum in _HANDLED:
            signal.signal(signum, signal.SIG_DFL)
        # Ctrl-C reaches the whole process group; the supervisor alone decides what it means.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self._selector.close()
        for fd in (self._wake_r, self._wake_w, self._lifeline_w):
            os.close(fd)
        for handle in self.workers.values():
            if handle.report_fd is not None:
                os.close(handle.report_fd)

    def _selector_wait(self) -> None:
        timeout = 1.0
        now = time.monotonic()
        if self._respawns:
            timeout = min(timeout, max(0.0, min(due for due, _ in self._respawns) - now))
        if self._deadline is not None:
            timeout = min(timeout, max(0.0, self._deadline - now))
        for key, _ in self._selector.select(timeout):
            if key.fd == self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._wake_r, 4096):
                        pass
            else:
                self._read_report(key.data)

    def _read_report(self, handle: WorkerHandle) -> None:
        """Read what the worker says about its boot; act once the pipe is closed or ready."""
        fd = handle.report_fd
        if fd is None:
            return
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if data:
            handle.report += data
            if handle.report == READY:
                handle.ready = True
                logger.info("Worker %d [pid %d] ready", handle.index + 1, handle.pid)
            return
        self._selector.unregister(fd)
        os.close(fd)
        handle.report_fd = None
        if handle.report.startswith(FAILED):
            self._boot_failed(handle, handle.report[1:].decode(errors="replace"))

    def _boot_failed(self, handle: WorkerHandle, text: str) -> None:
        if self._boot_error is None:
            self._boot_error = text or "the worker exited during boot"
            logger.info("Worker %d [pid %d] failed to boot; stopping", handle.index + 1, handle.pid)
        self.stop()

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            handle = self.workers.pop(pid, None)
            if handle is None:
                logger.debug("Reaped process %d (%s)", pid, describe_exit(status))
                continue
            while handle.report_fd is not None:  # the worker is gone: its report is complete
                self._read_report(handle)
            self._worker_exited(handle, status)

    def _worker_exited(self, handle: WorkerHandle, status: int) -> None:
        how = describe_exit(status)
        number = handle.index + 1
        if self._stopping or handle.stopping:
            logger.info("Worker %d [pid %d] %s", number, handle.pid, how)
            return
        if os.waitstatus_to_exitcode(status) == EXIT_BOOT_FAILED and not handle.ready:
            self._boot_failed(handle, "")
            return
        delay = self._backoff[handle.index].delay(time.monotonic() - handle.started)
        logger.warning(
            "Worker %d [pid %d] %s unexpectedly; restarting%s",
            number,
            handle.pid,
            how,
            f" in {delay:.1f}s" if delay else "",
        )
        self._respawns.append((time.monotonic() + delay, handle.index))

    def _respawn_due(self) -> None:
        if self._stopping or not self._respawns:
            return
        now = time.monotonic()
        due = [entry for entry in self._respawns if entry[0] <= now]
        self._respawns = [entry for entry in self._respawns if entry[0] > now]
        for _, index in due:
            self._spawn(index)

    def _enforce_deadline(self) -> None:
        if self._deadline is not None and time.monotonic() >= self._deadline and self.workers:
            logger.warning("Workers did not stop in time; killing them")
            self._kill_all()

    def _watch_queue(self) -> None:
        """Sample the shared accept queue about once a second."""
        now = time.monotonic()
        if now < self._next_sample or self._stopping:
            return
        self._next_sample = now + 1.0
        queue = accept_queue(self.sock)
        if queue is not None:
            warning = self._queue_watch.sample(*queue, now)
            if warning:
                logger.warning(warning)

    def _kill_all(self) -> None:
        self._forced = True
        self._deadline = None
        for handle in self.workers.values():
            self._signal_worker(handle, signal.SIGKILL)

    @staticmethod
    def _signal_worker(handle: WorkerHandle, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(handle.pid, signum)

    def _close(self) -> None:
        for handle in self.workers.values():
            if handle.report_fd is not None:
                os.close(handle.report_fd)
        self._selector.close()
        for fd in (self._wake_r, self._wake_w, self._lifeline_r, self._lifeline_w):
            with contextlib.suppress(OSError):
                os.close(fd)
