"""asgisup: an ASGI server whose workers only accept the work they have room for."""

from __future__ import annotations

__version__ = "0.1.0"

from asgisup.config import Config
from asgisup.errors import AppLoadError, AsgisupError, BindError, BootError, ConfigError
from asgisup.runner import run

__all__ = [
    "AppLoadError",
    "AsgisupError",
    "BindError",
    "BootError",
    "Config",
    "ConfigError",
    "__version__",
    "run",
]
