"""From a valid Config to a running server: the socket, the log lines, the supervisor."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import socket
import subprocess
import sys
from typing import Any

from asgisup.config import Config
from asgisup.errors import BindError, ConfigError
from asgisup.loading import load_app
from asgisup.logs import configure_logging, load_log_config
from asgisup.proctitle import app_name, set_title
from asgisup.sockinfo import set_defer_accept
from asgisup.supervisor.arbiter import Supervisor
from asgisup.supervisor.control import bind_endpoint
from asgisup.supervisor.cpus import usable_cpus
from asgisup.supervisor.sockets import bind_socket, describe
from asgisup.tls import make_context

logger = logging.getLogger("asgisup.error")


def run(app: Any, **options: Any) -> None:
    """Run ``app`` (an import string such as ``"main:app"`` or an ASGI app object).

    Options are the command line's, in snake_case (``workers=8, max_inflight=1``); ASGISUP_*
    environment variables fill in what is not given. Returns when the server has stopped.

    Raises ConfigError for a bad option, BindError when the socket cannot be created and
    BootError (with the app's error) when a worker cannot import the app or start its lifespan.
    """
    run_config(Config.from_sources(app, options, os.environ))


def resolve_implementations(config: Config) -> tuple[str, str, str]:
    """The loop, parser and WebSocket names the workers will use. Raises ConfigError if one
    asked for by name is not installed."""
    loop = _resolve(config.loop, "uvloop", "asyncio", "--loop")
    http = _resolve(config.http, "httptools", "h11", "--http")
    ws = config.ws
    if ws == "auto":
        ws = next((name for name in ("websockets", "wsproto") if _importable(name)), "none")
    elif ws != "none" and not _importable(ws):
        raise ConfigError(f"--ws {ws}: {ws} is not installed (pip install 'asgisup[standard]')")
    return loop, http, ws


def _importable(library: str) -> bool:
    """Found on the path; not imported here, so the supervisor stays small (a worker that
    cannot import it after all reports that as its boot error)."""
    try:
        return importlib.util.find_spec(library) is not None
    except (ImportError, ValueError):
        return False


def _resolve(choice: str, fast: str, fallback: str, flag: str) -> str:
    if choice == fallback:
        return choice
    try:
        __import__(fast)
    except ImportError:
        if choice == fast:
            raise ConfigError(
                f"{flag} {fast}: {fast} is not installed (pip install 'asgisup[standard]')"
            ) from None
        return fallback
    return fast


def run_config(config: Config) -> int:
    """Serve ``config`` until stopped; returns the exit code (0 after a clean stop).

    Raises the errors listed on :func:`run`.
    """
    log_config = None
    if config.log_config is not None:
        try:
            log_config = load_log_config(config.log_config)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--log-config {config.log_config}: {exc}") from None
    try:
        configure_logging(
            config.log_level,
            access_log=config.access_log,
            log_file=config.log_file,
            log_format=config.log_format,
            log_config=log_config,
        )
    except OSError as exc:
        raise ConfigError(
            f"--log-file {config.log_file}: cannot open it ({exc.strerror or exc})"
        ) from None
    except (ValueError, TypeError, AttributeError, ImportError) as exc:
        raise ConfigError(f"--log-config {config.log_config}: {exc}") from None
    loop_name, http_name, ws_name = resolve_implementations(config)
    config = config.replace(loop=loop_name, http=http_name, ws=ws_name)
    workers = config.resolved_workers(usable_cpus())
    ssl_context = make_context(config)
    app: object = config.app
    if config.preload:
        # Imported once here (an import error stops the server now, with exit code 3);
        # the workers inherit the object through fork and must not call a factory again.
        app = load_app(config.app, factory=config.factory, app_dir=config.app_dir or None)
        config = config.replace(factory=False)
    sock = bind_socket(
        host=config.host, port=config.port, uds=config.uds, fd=config.fd, backlog=config.backlog
    )
    try:
        defer = config.resolved_defer_accept()
        if defer and not set_defer_accept(sock, defer) and config.defer_accept != "auto":
            logger.warning("--defer-accept applies to TCP sockets only; ignored")
        from asgisup import __version__

        logger.info(
            "asgisup %s listening on %s (press CTRL+C to quit)",
            __version__,
            describe(sock).replace("http://", "https://") if ssl_context else describe(sock),
        )
        logger.info(
            "Supervisor [pid %d]: %d worker%s, loop %s, http %s, ws %s, %s",
            os.getpid(),
            workers,
            "" if workers == 1 else "s",
            loop_name,
            http_name,
            ws_name,
            f"max in-flight {config.max_inflight} per worker"
            if config.max_inflight
            else "no in-flight ceiling",
        )
        endpoints = _bind_endpoints(config)
        pid_file = None
        try:
            pid_file = _write_pid_file(config.pid_file)
            supervisor = Supervisor(
                config, sock, app, workers, endpoints=endpoints, ssl_context=ssl_context
            )
            reloader = _start_reloader(config)
            for where in supervisor.control.describe():
                logger.info(
                    "Supervisor endpoint on %s (/metrics, /status%s)", where, _health(config)
                )
            set_title(f"asgisup: supervisor [{app_name(config.app)}]")
            sys.stderr.flush()
            try:
                code = supervisor.run()
            finally:
                if reloader is not None:
                    reloader.terminate()
                    reloader.wait()
        finally:
            for endpoint in endpoints:
                endpoint.close()
            if pid_file:
                with contextlib.suppress(OSError):
                    os.unlink(pid_file)
        logger.info("Stopped.")
        return code
    finally:
        _close(sock, config)


def _start_reloader(config: Config) -> subprocess.Popen[bytes] | None:
    if not config.reload:
        return None
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        raise ConfigError("--reload: needs watchfiles (pip install 'asgisup[standard]')") from None
    directory = os.path.abspath(config.reload_dir or config.app_dir or ".")
    logger.info("Reload: watching %s for changed .py files (development only)", directory)
    command = [sys.executable, "-m", "asgisup.supervisor.reloader", str(os.getpid()), directory]
    return subprocess.Popen(command)


def _health(config: Config) -> str:
    return f", {config.health_path}" if config.health_path else ""


def _bind_endpoints(config: Config) -> tuple[socket.socket, ...]:
    if config.metrics_bind is None:
        return ()
    try:
        return (bind_endpoint(config.metrics_bind),)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise BindError(f"--metrics-bind {config.metrics_bind}: {reason}") from None


def _write_pid_file(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        with open(path, "w") as file:
            file.write(f"{os.getpid()}\n")
    except OSError as exc:
        raise ConfigError(f"--pid-file {path}: cannot write it ({exc.strerror or exc})") from None
    return path


def _close(sock: socket.socket, config: Config) -> None:
    path = sock.getsockname() if sock.family == socket.AF_UNIX else None
    sock.close()
    if path and config.fd is None:
        with contextlib.suppress(OSError):
            os.unlink(path)
