"""An app whose import takes a while, as a large application's does."""

import os
import time

time.sleep(float(os.environ.get("SLOW_IMPORT_SECONDS", "2")))

from tests.apps import app  # noqa: E402

__all__ = ["app"]
