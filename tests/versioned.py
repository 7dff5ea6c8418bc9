"""An app that answers with a version read from a file at import time: which code is running."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

VERSION = Path(os.environ["ASGISUP_TEST_VERSION_FILE"]).read_text().strip()


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = json.dumps({"version": VERSION, "pid": os.getpid()}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
