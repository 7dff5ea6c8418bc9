"""A worker process from fork to exit: load the app, run lifespan, serve, drain, stop.

The worker tells the supervisor how its boot went over a pipe (``report_fd``): ``R`` once it
accepts connections, or ``F`` followed by the error text when it cannot serve at all. The
supervisor shows that text once and stops, instead of restarting workers that cannot boot.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import functools
import logging
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from asgisup.admission import Admission
from asgisup.config import Config
from asgisup.errors import AppLoadError
from asgisup.loading import load_app
from asgisup.logs import reopen_log_files, set_worker
from asgisup.proctitle import app_name, set_title
from asgisup.protocols.http.connection import HttpConnection
from asgisup.protocols.http.parsers import parser_factory
from asgisup.protocols.http.proxy import TrustedProxies
from asgisup.protocols.http.settings import HttpSettings
from asgisup.protocols.websocket.engines import engine_factory
from asgisup.protocols.websocket.session import WsSettings
from asgisup.scoreboard import SlotWriter, State
from asgisup.types import ASGIApp
from asgisup.worker.lifespan import Lifespan, LifespanFailure
from asgisup.worker.listener import Listener

logger = logging.getLogger("asgisup.error")

EXIT_OK = 0
EXIT_BOOT_FAILED = 3

READY = b"R"
FAILED = b"F"

# How often the event loop writes its heartbeat (and counters) to the scoreboard.
HEARTBEAT_INTERVAL = 1.0
# After the drain deadline, how long WebSockets closed with 1012 have to flush that close.
WEBSOCKET_CLOSE_GRACE = 1.0

_PR_SET_PDEATHSIG = 1


@dataclass(slots=True)
class WorkerSpec:
    index: int
    config: Config
    sock: socket.socket
    app: object  # an import string or the application object (inherited through fork)
    report_fd: int
    lifeline_fd: int  # readable (EOF) when the supervisor is gone
    slot: SlotWriter | None = None  # this worker's scoreboard slot
    ssl: ssl.SSLContext | None = None  # TLS for every accepted connection
    workers: int = 1  # how many workers the supervisor runs (when this one was started)


def new_event_loop(name: str) -> asyncio.AbstractEventLoop:
    """A fresh loop for ``--loop`` ``name`` (auto: uvloop when installed).

    Raises ImportError if uvloop is asked for and not installed.
    """
    if name in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if name == "uvloop":
                raise
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this worker when the supervisor dies, even by SIGKILL."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _report(fd: int, message: bytes) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, message)


def run_worker(spec: WorkerSpec) -> int:
    """Serve until told to stop; returns the process exit code."""
    # The terminal's Ctrl-C reaches the whole process group; the supervisor decides what
    # it means (graceful, then immediate on a second one) and tells workers with SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    if _lifeline_cut(spec.lifeline_fd):
        return EXIT_OK  # the supervisor died before the death signal was armed
    if spec.slot is not None:
        spec.slot.adopt()
        spec.slot.publish()
    set_title(f"asgisup: worker {spec.index} [{app_name(spec.app)}]")
    set_worker(spec.index)
    config = spec.config
    try:
        app = load_app(spec.app, factory=config.factory, app_dir=config.app_dir or None)
    except AppLoadError as exc:
        _report(spec.report_fd, FAILED + str(exc).encode(errors="replace"))
        return EXIT_BOOT_FAILED
    try:
        ws = websocket_settings(config)
    except ImportError as exc:  # the supervisor found the library; importing it failed
        _report(spec.report_fd, FAILED + f"--ws {config.ws}: {exc}".encode(errors="replace"))
        return EXIT_BOOT_FAILED
    loop = new_event_loop(config.loop)
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(_serve(spec, app, ws, loop))
    finally:
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _lifeline_cut(fd: int) -> bool:
    import select

    readable, _, _ = select.select([fd], [], [], 0)
    return bool(readable)


def websocket_settings(config: Config) -> WsSettings | None:
    """None for ``--ws none``. Raises ImportError if the library cannot be imported."""
    engine = engine_factory(config.ws)
    if engine is None:
        return None
    return WsSettings(
        engine=engine,
        max_size=config.ws_max_size,
        max_queue=config.ws_max_queue,
        ping_interval=config.ws_ping_interval,
        ping_timeout=config.ws_ping_timeout,
        per_message_deflate=config.ws_per_message_deflate,
    )


def build_settings(
    config: Config,
    app: ASGIApp,
    state: dict[str, Any],
    ws: WsSettings | None,
    *,
    https: bool = False,
) -> HttpSettings:
    extra = b"".join(
        f"{name.lower()}: {value}\r\n".encode("latin-1") for name, value in config.headers
    )
    return HttpSettings(
        app=app,
        parser=functools.partial(parser_factory(config.http), config.max_request_head_size),
        root_path=config.root_path,
        timeout_keep_alive=float(config.timeout_keep_alive),
        timeout_request_head=config.timeout_request_head,
        timeout_client_stall=config.timeout_client_stall,
        max_request_headers=config.max_request_headers,
        max_request_body_size=config.max_request_body_size,
        health_path=config.health_path,
        scheme="https" if https else "http",
        access_log=config.access_log
        and logging.getLogger("asgisup.access").isEnabledFor(logging.INFO),
        access_log_format=config.access_log_format,
        server_header=config.server_header,
        date_header=config.date_header,
        extra_headers=extra,
        trusted=TrustedProxies(config.forwarded_allow_ips) if config.proxy_headers else None,
        state=state,
        ws=ws,
    )


async def _serve(
    spec: WorkerSpec, app: ASGIApp, ws: WsSettings | None, loop: asyncio.AbstractEventLoop
) -> int:
    config = spec.config
    state: dict[str, Any] = {}
    lifespan = Lifespan(app, config.lifespan, state)
    try:
        await lifespan.startup()
    except LifespanFailure as exc:
        _report(spec.report_fd, FAILED + str(exc).encode(errors="replace"))
        return EXIT_BOOT_FAILED

    admission: Admission[HttpConnection] = Admission(config.max_inflight)
    listener = Listener(
        loop,
        spec.sock,
        admission,
        build_settings(config, app, state, ws, https=spec.ssl is not None),
        busy_close_min_service=config.busy_close_min_service if config.busy_close else None,
        slot=spec.slot,
        ssl=spec.ssl,
        max_websockets=config.max_websockets,
        workers=spec.workers,
    )
    stop: asyncio.Future[None] = loop.create_future()

    def request_stop(*_: object) -> None:
        if not stop.done():
            stop.set_result(None)

    loop.add_signal_handler(signal.SIGTERM, request_stop)
    loop.add_signal_handler(signal.SIGUSR1, reopen_log_files)
    loop.add_reader(spec.lifeline_fd, request_stop)
    heartbeat = Heartbeat(loop, listener, spec.slot) if spec.slot is not None else None
    listener.start()
    if heartbeat is not None:
        heartbeat.set_state(State.READY)
    _report(spec.report_fd, READY)
    os.close(spec.report_fd)

    await stop
    loop.remove_reader(spec.lifeline_fd)
    listener.drain()
    if heartbeat is not None:
        heartbeat.set_state(State.DRAINING)
    logger.info(
        "Worker %d [pid %d] draining: accepting no more, finishing %d connection(s)",
        spec.index,
        os.getpid(),
        len(listener.connections),
    )
    try:
        await asyncio.wait_for(_drained(listener), config.timeout_graceful_shutdown)
    except asyncio.TimeoutError:
        logger.warning(
            "Graceful shutdown deadline (%ss) passed; closing %d connection(s)",
            config.timeout_graceful_shutdown,
            len(listener.connections),
        )
        if listener.close_websockets():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(listener.wait_closed(), WEBSOCKET_CLOSE_GRACE)
        listener.abort_all()
        await _settle(loop)
    await lifespan.shutdown()
    return EXIT_OK


class Heartbeat:
    """Writes the worker's slot from a callback of its event loop, once a second.

    A callback, never a thread: when the app blocks the loop, the heartbeat stops, and the
    supervisor's watchdog sees how long the loop has been stuck (and on which request).
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, listener: Listener, slot: SlotWriter
    ) -> None:
        self.loop = loop
        self.listener = listener
        self.slot = slot
        self._beat()

    def set_state(self, state: State) -> None:
        self.slot.state = state
        self._write()

    def _beat(self) -> None:
        self._write()
        self.loop.call_later(HEARTBEAT_INTERVAL, self._beat)

    def _write(self) -> None:
        slot = self.slot
        slot.heartbeat = time.monotonic()
        slot.load = self.listener.admission.load
        slot.accepted = self.listener.accepted
        slot.full_seconds = self.listener.full_seconds()
        slot.websockets = self.listener.websockets
        slot.connections = len(self.listener.connections)
        slot.publish()


async def _drained(listener: Listener) -> None:
    """Every connection closed, then every request's app call returned: an app may go on
    after its response went out (Django closes the response in a thread). Tasks the app
    started itself (a lifespan's background job) are not waited for."""
    await listener.wait_closed()
    while listener.app_tasks:
        await asyncio.wait(set(listener.app_tasks))


async def _settle(loop: asyncio.AbstractEventLoop) -> None:
    """Let cancelled request tasks run their cleanup."""
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks(loop) if task is not current]
    if tasks:
        await asyncio.wait(tasks, timeout=1.0)


def child_main(spec: WorkerSpec, close_fds: Callable[[], None]) -> NoReturn:
    """Entry point right after fork: never returns to the caller's stack."""
    code = 1
    try:
        close_fds()
        code = run_worker(spec)
    except BaseException:
        logger.exception("Worker %d crashed", spec.index)
    finally:
        logging.shutdown()
        os._exit(code)
