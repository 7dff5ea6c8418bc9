"""The example the README runs: ``asgisup main:app --app-dir examples/fastapi_app --workers 4
--max-inflight 1``.

Each endpoint shows one kind of work a worker does, and every answer names the worker's pid,
so ``curl`` shows the requests spreading over the workers.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    # Lifespan state is copied into every request's scope (request.state).
    yield {"booted_at": time.time(), "worker_pid": os.getpid()}


app = FastAPI(title="asgisup example", lifespan=lifespan)


@app.get("/")
async def hello(request: Request) -> dict[str, Any]:
    """Fast: answers at once."""
    return {"hello": "world", "pid": os.getpid(), "booted_at": request.state.booted_at}


@app.get("/cpu")
def cpu(ms: int = 50) -> dict[str, Any]:
    """CPU-heavy: hashes for about ``ms`` milliseconds (FastAPI runs it in a thread)."""
    deadline = time.perf_counter() + ms / 1000
    digest = b"asgisup"
    rounds = 0
    while time.perf_counter() < deadline:
        digest = hashlib.sha256(digest).digest()
        rounds += 1
    return {"rounds": rounds, "pid": os.getpid()}


@app.get("/slow")
async def slow(ms: int = 500) -> dict[str, Any]:
    """Slow but idle: awaits for ``ms`` milliseconds (a database call, say)."""
    await asyncio.sleep(ms / 1000)
    return {"slept_ms": ms, "pid": os.getpid()}
