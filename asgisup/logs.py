"""Log setup: the same line shapes uvicorn users know, on stderr, as containers expect."""

from __future__ import annotations

import logging
import sys

TRACE = 5
LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE,
}


class LevelPrefixFormatter(logging.Formatter):
    """``INFO:     message``, like uvicorn's default formatter."""

    def format(self, record: logging.LogRecord) -> str:
        record.levelprefix = f"{record.levelname}:".ljust(9)
        return super().format(record)


def configure_logging(level: str, *, access_log: bool) -> None:
    """Send asgisup's loggers to stderr at ``level``; idempotent."""
    logging.addLevelName(TRACE, "TRACE")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LevelPrefixFormatter("%(levelprefix)s %(message)s"))
    for name in ("asgisup.error", "asgisup.access"):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            if getattr(old, "_asgisup", False):
                logger.removeHandler(old)
        handler._asgisup = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(LEVELS[level])
        logger.propagate = False
    if not access_log:
        logging.getLogger("asgisup.access").setLevel(logging.CRITICAL + 1)
