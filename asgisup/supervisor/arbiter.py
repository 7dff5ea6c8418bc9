"""The supervisor's main loop: fork workers, watch them, replace them, stop.

Contracts (gunicorn's arbiter is the classic model):

* Signal handlers only record the signal; this loop acts on it. The handlers write to a
  wake-up pipe (``signal.set_wakeup_fd``) so the loop's ``select`` returns at once.
* Every child is reaped with ``waitpid(-1, WNOHANG)``, workers and strays alike, so the
  supervisor can run as a container's PID 1.
* The loop converges on "one serving worker per index ``0..size-1``": a missing one is
  started (after a back-off if its predecessor crashed young); one above ``size`` is drained.
* Replacing a worker that still serves (rolling restart, recycling) starts the replacement
  first and drains the old one only once the new one is ready: capacity never drops.
* A worker that cannot boot with no predecessor to fall back on stops the whole server with
  that error, shown once; restarting it would only fail again. A replacement that cannot
  boot is reported and its predecessor keeps serving.
* Graceful first, forceful on a deadline: SIGTERM, then SIGKILL once the worker's deadline
  has passed. A second SIGINT (Ctrl-C twice) kills at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import selectors
import signal
import socket
import ssl
import time
from typing import NoReturn

from asgisup.config import Config
from asgisup.errors import BootError
from asgisup.logs import reopen_log_files
from asgisup.proctitle import app_name
from asgisup.scoreboard import Scoreboard
from asgisup.sockinfo import accept_queue
from asgisup.supervisor.control import ControlServer, bind_endpoint, control_socket_path
from asgisup.supervisor.figures import take_snapshot
from asgisup.supervisor.handles import WorkerHandle, describe_exit
from asgisup.supervisor.metrics import Snapshot
from asgisup.supervisor.policy import QueueWatch, RestartBackoff, recycle_reason, request_limit
from asgisup.supervisor.procfs import resident_bytes
from asgisup.supervisor.rolling import RollingRestart
from asgisup.supervisor.signals import SignalInbox
from asgisup.worker.process import EXIT_BOOT_FAILED, FAILED, READY, WorkerSpec, child_main

logger = logging.getLogger("asgisup.error")

# Time a worker gets for lifespan shutdown and exit after its graceful deadline.
STOP_MARGIN = 5.0
# A worker whose loop is blocked gets SIGTERM, then SIGKILL this much later.
WATCHDOG_GRACE = 5.0
# The loop wakes at least this often to check heartbeats, boots and recycling.
TICK = 0.5


class Supervisor:
    """Runs ``workers`` worker processes on ``sock`` until told to stop."""

    def __init__(
        self,
        config: Config,
        sock: socket.socket,
        app: object,
        workers: int,
        *,
        endpoints: tuple[socket.socket, ...] = (),
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``endpoints``: listening sockets for the supervisor's own HTTP endpoint (metrics);
        ``ssl_context``: TLS for the workers' connections."""
        self.config = config
        self.ssl_context = ssl_context
        self.sock = sock
        self.app = app
        self.size = workers
        self.generation = 1
        self.workers: dict[int, WorkerHandle] = {}  # by pid
        self.board = Scoreboard(max(64, 2 * workers + 8))
        self._max_size = self.board.slots // 2 - 2
        self._backoff: dict[int, RestartBackoff] = {}
        self._not_before: dict[int, float] = {}  # index -> earliest (re)start after a failure
        self.rolling = RollingRestart()
        self.signals = SignalInbox()
        self._selector = selectors.DefaultSelector()
        self._stopping = False
        self._forced = False
        self._boot_error: str | None = None
        self._queue_watch = QueueWatch()
        self._next_sample = 0.0
        self._rng = random.Random()
        self._lifeline_r, self._lifeline_w = os.pipe()
        self.restarts: dict[str, int] = {}  # workers replaced, by reason
        self.control = ControlServer(
            self._selector,
            self.snapshot,
            health_path=config.health_path,
            queue_threshold=config.health_queue_threshold,
        )
        for endpoint in endpoints:
            self.control.listen(endpoint)
        try:
            self.control.listen(bind_endpoint(control_socket_path(os.getpid())))
        except OSError as exc:
            logger.warning("No control socket for 'asgisup status' (%s)", exc)

    # -- public --------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped; returns 0 after a clean stop, 1 after a forced one.

        Raises BootError with the app's error when a worker could not boot.
        """
        try:
            with self.signals.installed(self._selector):
                self._loop()
        finally:
            self._close()
        if self._boot_error is not None:
            raise BootError(self._boot_error)
        return 1 if self._forced else 0

    def _loop(self) -> None:
        while not (self._stopping and not self.workers):
            now = time.monotonic()
            if not self._stopping:
                self._supervise(now)
            self._enforce_deadlines(now)
            self._watch_queue(now)
            self.control.sweep(now)
            self._selector_wait()
            self._handle_signals()
            self._reap()

    def stop(self) -> None:
        """Begin a graceful stop: every worker drains and exits."""
        if self._stopping:
            return
        self._stopping = True
        self.rolling.stop()
        for handle in self.workers.values():
            self._stop_worker(handle)

    # -- signals -------------------------------------------------------------------------

    def _handle_signals(self) -> None:
        pending = self.signals.pending
        while pending:
            signum = pending.popleft()
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
            elif self._stopping:
                continue
            elif signum == signal.SIGHUP:
                self._begin_rolling_restart()
            elif signum == signal.SIGTTIN:
                self._resize(self.size + 1)
            elif signum == signal.SIGTTOU:
                self._resize(self.size - 1)
            elif signum == signal.SIGUSR1:
                reopen_log_files()
                for handle in self.workers.values():
                    handle.signal(signal.SIGUSR1)
                logger.info("SIGUSR1: log files reopened")

    def _begin_rolling_restart(self) -> None:
        self.generation += 1
        self.rolling.begin(
            handle.pid
            for handle in sorted(self.workers.values(), key=lambda handle: handle.index)
            if not handle.retiring
        )
        fresh = (
            "imports the app afresh" if isinstance(self.app, str) else "runs the same app object"
        )
        logger.info(
            "SIGHUP: rolling restart to generation %d, one worker at a time (each replacement %s)",
            self.generation,
            fresh,
        )

    def _resize(self, size: int) -> None:
        if not 1 <= size <= self._max_size:
            logger.warning(
                "Worker count stays %d: it must be between 1 and %d", self.size, self._max_size
            )
            return
        self.size = size
        logger.info("Worker count is now %d", size)

    # -- supervision ---------------------------------------------------------------------

    def _supervise(self, now: float) -> None:
        """Bring the workers to the wanted state: one serving worker per index."""
        for handle in list(self.workers.values()):
            if handle.retiring:
                continue
            if handle.index >= self.size:
                logger.info("%s is surplus; stopping it", handle.name)
                handle.retiring = True
                self._stop_worker(handle)
            elif handle.ready:
                self._check_ready(handle, now)
            else:
                self._check_boot(handle, now)
        serving = {handle.index for handle in self.workers.values() if not handle.retiring}
        for index in range(self.size):
            if index not in serving and self._not_before.get(index, 0.0) <= now:
                self._spawn(index)
        self._continue_rolling_restart()

    def _check_boot(self, handle: WorkerHandle, now: float) -> None:
        limit = self.config.timeout_worker_boot
        if limit and now - handle.started > limit:
            logger.warning(
                "%s not ready after %gs (--timeout-worker-boot); killing it", handle.name, limit
            )
            if handle.replaces is not None:
                self._replacement_failed(handle, f"was not ready after {limit:g}s")
            self._count("boot_timeout")
            handle.retiring = handle.stopping = True
            handle.signal(signal.SIGKILL)

    def _check_ready(self, handle: WorkerHandle, now: float) -> None:
        slot = self.board.read(handle.slot)
        limit = self.config.timeout_worker
        blocked = slot.blocked_for(now)
        if limit and blocked > limit:
            logger.error(
                "%s: its event loop has been blocked for %.1fs (--timeout-worker %gs)%s; "
                "replacing it",
                handle.name,
                blocked,
                limit,
                slot.latest_request(now),
            )
            handle.retiring = True
            self._count("watchdog")
            self._stop_worker(handle, grace=WATCHDOG_GRACE)
            return
        if handle.replaces is not None or self._not_before.get(handle.index, 0.0) > now:
            return
        resident = resident_bytes(handle.pid) if self.config.max_worker_memory else None
        reason = recycle_reason(
            slot.requests, handle.request_limit, resident, self.config.max_worker_memory
        )
        if reason is not None:
            key, words = reason
            logger.info("%s %s; replacing it", handle.name, words)
            self._count(key)
            self._replace(handle)

    def _replace(self, old: WorkerHandle) -> WorkerHandle:
        """Start ``old``'s successor; ``old`` is drained once the successor is ready."""
        old.retiring = True
        new = self._spawn(old.index)
        new.replaces = old.pid
        return new

    def _continue_rolling_restart(self) -> None:
        old = self.rolling.next(self.workers, self.generation)
        if old is not None:
            self._count("reload")
            self.rolling.booting = self._replace(old).pid

    def _became_ready(self, handle: WorkerHandle) -> None:
        handle.ready = True
        logger.info("%s ready", handle.name)
        old = self.workers.get(handle.replaces) if handle.replaces is not None else None
        handle.replaces = None
        if old is not None:
            self._stop_worker(old)
        self.rolling.ready(handle.pid, self.generation)

    def _replacement_failed(self, handle: WorkerHandle, why: str) -> None:
        """A successor died before it was ready: its predecessor keeps serving."""
        old = self.workers.get(handle.replaces) if handle.replaces is not None else None
        handle.replaces = None
        if old is not None and not old.stopping:
            old.retiring = False
        delay = self._backoff_for(handle.index).delay(0.0)
        self._not_before[handle.index] = time.monotonic() + delay
        if self.rolling.abandon(handle.pid):
            logger.error(
                "%s, a replacement, %s; rolling restart abandoned, the running workers keep "
                "serving",
                handle.name,
                why,
            )
        else:
            logger.error("%s, a replacement, %s; its predecessor keeps serving", handle.name, why)

    # -- workers -------------------------------------------------------------------------

    def _spawn(self, index: int) -> WorkerHandle:
        report_r, report_w = os.pipe()
        slot = self.board.claim(self.generation, self.config.max_inflight)
        with self.signals.held() as mask:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child's coverage is collected by the child
                self._become_worker(index, slot, report_r, report_w, mask)
            os.close(report_w)
            handle = WorkerHandle(index, pid, slot, self.generation, report_r, time.monotonic())
            self.workers[pid] = handle
            self._selector.register(report_r, selectors.EVENT_READ, handle)
        c = self.config
        handle.request_limit = request_limit(c.max_requests, c.max_requests_jitter, self._rng)
        logger.info("Started worker %d [pid %d]", index + 1, pid)
        return handle

    def _become_worker(
        self, index: int, slot: int, report_r: int, report_w: int, mask: set[int | signal.Signals]
    ) -> NoReturn:  # pragma: no cover - runs in the child
        os.close(report_r)
        spec = WorkerSpec(
            index=index + 1,
            config=self.config,
            sock=self.sock,
            app=self.app,
            report_fd=report_w,
            lifeline_fd=self._lifeline_r,
            slot=self.board.writer(slot),
            ssl=self.ssl_context,
            workers=self.size,
        )

        def close_in_child() -> None:
            self._close_in_child()
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

        child_main(spec, close_in_child)

    def _close_in_child(self) -> None:
        """In a fresh child: drop the supervisor's fds and signal plumbing."""
        self.signals.reset_in_child()
        self._selector.close()
        os.close(self._lifeline_w)
        for endpoint, _ in self.control.listeners:
            endpoint.close()
        for client in self.control.clients:
            client.close()
        for handle in self.workers.values():
            if handle.report_fd is not None:
                os.close(handle.report_fd)

    def _stop_worker(self, handle: WorkerHandle, grace: float | None = None) -> None:
        """SIGTERM now, SIGKILL at the deadline (its drain time unless ``grace`` is given)."""
        if grace is None:
            grace = self.config.timeout_graceful_shutdown + STOP_MARGIN
        handle.stop(time.monotonic() + grace)

    def _selector_wait(self) -> None:
        timeout = TICK
        now = time.monotonic()
        for handle in self.workers.values():
            if handle.kill_at is not None:
                timeout = min(timeout, max(0.0, handle.kill_at - now))
        for key, _ in self._selector.select(timeout):
            if key.fd == self.signals.wake_r:
                self.signals.drain_wakeups()
            elif isinstance(key.data, WorkerHandle):
                self._read_report(key.data)
            else:
                key.data()  # the control endpoint

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
                self._became_ready(handle)
            return
        self._selector.unregister(fd)
        os.close(fd)
        handle.report_fd = None
        if handle.report.startswith(FAILED):
            self._boot_failed(handle, handle.report[1:].decode(errors="replace"))

    def _boot_failed(self, handle: WorkerHandle, text: str) -> None:
        if handle.replaces is not None and not self._stopping:
            self._replacement_failed(handle, f"failed to boot:\n{text}")
            handle.retiring = True
            return
        if self._boot_error is None:
            self._boot_error = text or "the worker exited during boot"
            logger.info("%s failed to boot; stopping", handle.name)
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
            self.board.free(handle.slot)
            self._worker_exited(handle, status)

    def _worker_exited(self, handle: WorkerHandle, status: int) -> None:
        how = describe_exit(status)
        if self._stopping or handle.retiring:
            logger.info("%s %s", handle.name, how)
            return
        if handle.replaces is not None:
            self._replacement_failed(handle, f"{how} before it was ready")
            return
        if os.waitstatus_to_exitcode(status) == EXIT_BOOT_FAILED and not handle.ready:
            self._boot_failed(handle, "")
            return
        now = time.monotonic()
        self._count("crash")
        delay = self._backoff_for(handle.index).delay(now - handle.started)
        self._not_before[handle.index] = now + delay
        logger.warning(
            "%s %s unexpectedly; restarting%s",
            handle.name,
            how,
            f" in {delay:.1f}s" if delay else "",
        )

    def _count(self, reason: str) -> None:
        self.restarts[reason] = self.restarts.get(reason, 0) + 1

    def snapshot(self) -> Snapshot:
        """The figures of every worker and of the accept queue, as of now."""
        return take_snapshot(
            self.workers.values(),
            self.board,
            self.sock,
            app=app_name(self.config.app),
            ceiling=self.config.max_inflight,
            size=self.size,
            generation=self.generation,
            stopping=self._stopping,
            restarts=self.restarts,
        )

    def _backoff_for(self, index: int) -> RestartBackoff:
        return self._backoff.setdefault(index, RestartBackoff())

    def _enforce_deadlines(self, now: float) -> None:
        for handle in self.workers.values():
            if handle.kill_at is not None and now >= handle.kill_at:
                logger.warning("%s did not stop in time; killing it", handle.name)
                self._forced = self._forced or self._stopping
                handle.kill()

    def _watch_queue(self, now: float) -> None:
        """Sample the shared accept queue about once a second."""
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
        for handle in self.workers.values():
            handle.kill()

    def _close(self) -> None:
        self.control.close()
        for handle in self.workers.values():
            if handle.report_fd is not None:
                os.close(handle.report_fd)
        self._selector.close()
        self.board.close()
        self.signals.close()
        for fd in (self._lifeline_r, self._lifeline_w):
            with contextlib.suppress(OSError):
                os.close(fd)
