"""Log setup: the same line shapes uvicorn users know, on stderr, as containers expect."""

from __future__ import annotations

import contextlib
import logging
import sys
import weakref

TRACE = 5
LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE,
}

# The handlers configure_logging installed (a re-configuration replaces them, not the user's).
_INSTALLED: weakref.WeakSet[logging.Handler] = weakref.WeakSet()


class LevelPrefixFormatter(logging.Formatter):
    """``INFO:     message``, like uvicorn's default formatter."""

    def format(self, record: logging.LogRecord) -> str:
        record.levelprefix = f"{record.levelname}:".ljust(9)
        return super().format(record)


def configure_logging(level: str, *, access_log: bool, log_file: str | None = None) -> None:
    """Send asgisup's loggers to stderr (or append to ``log_file``) at ``level``; idempotent.

    Raises OSError when ``log_file`` cannot be opened.
    """
    logging.addLevelName(TRACE, "TRACE")
    handler: logging.Handler
    if log_file is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.FileHandler(log_file, encoding="utf-8")
    _INSTALLED.add(handler)
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
