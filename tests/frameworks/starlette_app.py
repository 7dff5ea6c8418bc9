"""A Starlette app: JSON, streaming, an upload, lifespan state."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    yield {"started_by": os.getpid()}


async def home(request: Request) -> JSONResponse:
    return JSONResponse({"framework": "starlette", "started_by": request.state.started_by})


async def stream(request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(5):
            yield f"chunk {i}\n".encode()

    return StreamingResponse(chunks(), media_type="text/plain")


async def upload(request: Request) -> JSONResponse:
    form = await request.form()
    sent = form["file"]
    data = await sent.read()  # type: ignore[union-attr]
    return JSONResponse({"name": sent.filename, "size": len(data)})  # type: ignore[union-attr]


app = Starlette(
    routes=[
        Route("/", home),
        Route("/stream", stream),
        Route("/upload", upload, methods=["POST"]),
    ],
    lifespan=lifespan,
)
