"""Process titles, so ``ps`` tells the supervisor and each worker apart."""

from __future__ import annotations


def app_name(app: object) -> str:
    """How process titles and the status name the app."""
    return app if isinstance(app, str) else getattr(app, "__name__", type(app).__name__)


def set_title(title: str) -> None:
    """Set the process title ``ps`` shows, when setproctitle is installed (standard extra)."""
    try:
        from setproctitle import setproctitle
    except ImportError:
        return
    setproctitle(title)
