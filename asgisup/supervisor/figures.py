"""Reading the figures for /metrics, /status and readiness: scoreboard slots, /proc and the
listening socket's TCP_INFO, into a Snapshot."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable, Mapping

from asgisup.scoreboard import Scoreboard
from asgisup.sockinfo import accept_queue
from asgisup.supervisor.handles import WorkerHandle
from asgisup.supervisor.metrics import Snapshot, WorkerFigures
from asgisup.supervisor.procfs import resident_bytes


def take_snapshot(
    handles: Iterable[WorkerHandle],
    board: Scoreboard,
    sock: socket.socket,
    *,
    app: str,
    ceiling: int,
    size: int,
    generation: int,
    stopping: bool,
    restarts: Mapping[str, int],
) -> Snapshot:
    """The figures of every worker in ``handles`` and of ``sock``'s accept queue, now."""
    now = time.monotonic()
    queue = accept_queue(sock)
    workers = []
    for handle in handles:
        slot = board.read(handle.slot)
        workers.append(
            WorkerFigures(
                index=handle.index + 1,
                pid=handle.pid,
                generation=handle.generation,
                state=slot.state.name.lower() if handle.ready else "booting",
                load=slot.load,
                ceiling=ceiling,
                accepted=slot.accepted,
                requests=slot.requests,
                responses=slot.responses,
                heartbeat_age=round(slot.blocked_for(now), 3) if handle.ready else 0.0,
                resident_bytes=resident_bytes(handle.pid),
                full_seconds=round(slot.full_seconds, 3),
                latency_buckets=slot.latency,
                latency_sum=slot.latency_sum,
                websockets=slot.websockets,
                connections=slot.connections,
            )
        )
    return Snapshot(
        app=app,
        size=size,
        generation=generation,
        stopping=stopping,
        queue_depth=queue[0] if queue else None,
        queue_limit=queue[1] if queue else None,
        workers=workers,
        restarts=dict(restarts),
    )
