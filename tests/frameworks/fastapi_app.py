"""A FastAPI app: JSON, a sync endpoint (run in a thread), streaming, an upload, lifespan, and
a WebSocket endpoint."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    yield {"started_by": os.getpid()}


app = FastAPI(lifespan=lifespan)


@app.get("/")
async def home(request: Request) -> dict[str, Any]:
    return {"framework": "fastapi", "started_by": request.state.started_by}


@app.get("/sync")
def sync() -> dict[str, Any]:
    return {"pid": os.getpid()}


@app.get("/stream")
def stream() -> StreamingResponse:
    def chunks() -> Iterator[bytes]:
        for i in range(5):
            yield f"chunk {i}\n".encode()

    return StreamingResponse(chunks(), media_type="text/plain")


@app.post("/upload")
async def upload(file: UploadFile) -> dict[str, Any]:
    data = await file.read()
    return {"name": file.filename, "size": len(data)}


@app.websocket("/ws")
async def chat(websocket: WebSocket) -> None:
    """Greets with the worker's pid, then echoes JSON messages with a count until disconnect."""
    await websocket.accept(
        subprotocol="chat" if "chat" in websocket.scope["subprotocols"] else None
    )
    await websocket.send_json({"pid": os.getpid()})
    count = 0
    try:
        while True:
            message = await websocket.receive_json()
            count += 1
            await websocket.send_json({"echo": message, "count": count})
    except WebSocketDisconnect:
        pass
