"""An app that says which process imported it (for --preload)."""

from __future__ import annotations

import json
import os
from typing import Any

IMPORTED_IN = os.getpid()


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = json.dumps({"imported_in": IMPORTED_IN, "pid": os.getpid()}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
