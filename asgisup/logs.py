"""Log setup: the same line shapes uvicorn users know, on stderr, as containers expect.

Two loggers: ``asgisup.error`` (everything but requests) and ``asgisup.access`` (one record
per response). ``--log-format json`` writes one JSON object a line with the process and
worker; an access record carries its request's fields (see ACCESS_FIELDS) as JSON keys and
as the ``access`` attribute for a ``--log-config`` of your own.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import logging.config
import sys
import weakref
from typing import Any

TRACE = 5
LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE,
}

#: The fields an access log line may use in --access-log-format, with sample values.
ACCESS_FIELDS: dict[str, object] = {
    "client": "127.0.0.1:50000",
    "method": "GET",
    "path": "/items?page=2",
    "http_version": "1.1",
    "status": 200,
    "reason": "OK",
    "duration_ms": 1.25,
}
ACCESS_FORMAT = '{client} - "{method} {path} HTTP/{http_version}" {status} {reason}'

_worker: int | None = None  # this process's worker number (None: the supervisor)


def set_worker(index: int) -> None:
    """Tag this process's JSON log records with its worker number."""
    global _worker
    _worker = index


# The handlers configure_logging installed (a re-configuration replaces them, not the user's).
_INSTALLED: weakref.WeakSet[logging.Handler] = weakref.WeakSet()


class LevelPrefixFormatter(logging.Formatter):
    """``INFO:     message``, like uvicorn's default formatter."""

    def format(self, record: logging.LogRecord) -> str:
        record.levelprefix = f"{record.levelname}:".ljust(9)
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, pid, worker, message, request fields."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        out: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "worker": _worker,
            "message": record.getMessage(),
        }
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            out.update(access)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def load_log_config(path: str) -> dict[str, Any]:
    """A dictConfig from a JSON or (with PyYAML installed) YAML file.

    Raises OSError when it cannot be read and ValueError when it is not a valid config.
    """
    with open(path, encoding="utf-8") as file:
        text = file.read()
    if path.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError:
            raise ValueError("YAML needs PyYAML (pip install pyyaml)") from None
        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("expected a mapping (logging.config.dictConfig's schema)")
    return data


def configure_logging(
    level: str,
    *,
    access_log: bool,
    log_file: str | None = None,
    log_format: str = "text",
    log_config: dict[str, Any] | None = None,
) -> None:
    """Send asgisup's loggers to stderr (or append to ``log_file``) at ``level``; idempotent.

    With ``log_config`` (a dictConfig) that configuration is applied instead, untouched.
    Raises OSError when ``log_file`` cannot be opened and ValueError for a bad ``log_config``.
    """
    logging.addLevelName(TRACE, "TRACE")
    if log_config is not None:
        logging.config.dictConfig(log_config)
        if not access_log:
            logging.getLogger("asgisup.access").setLevel(logging.CRITICAL + 1)
        return
    handler: logging.Handler
    if log_file is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.FileHandler(log_file, encoding="utf-8")
    _INSTALLED.add(handler)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(LevelPrefixFormatter("%(levelprefix)s %(message)s"))
    for name in ("asgisup.error", "asgisup.access"):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            if old in _INSTALLED:
                logger.removeHandler(old)
                old.close()
        logger.addHandler(handler)
        logger.setLevel(LEVELS[level])
        logger.propagate = False
    if not access_log:
        logging.getLogger("asgisup.access").setLevel(logging.CRITICAL + 1)


def reopen_log_files() -> None:
    """Reopen asgisup's log file (SIGUSR1), so a rotated file is let go and a new one begun."""
    seen: set[int] = set()
    for name in ("asgisup.error", "asgisup.access"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.FileHandler) and id(handler) not in seen:
                seen.add(id(handler))
                with handler.lock or contextlib.nullcontext():
                    stream = handler.stream
                    handler.stream = handler._open()
                    if stream is not None:
                        stream.close()
