"""The ASGI ``lifespan`` protocol: startup before the first accept, shutdown after the drain."""

from __future__ import annotations

import asyncio
import logging
import traceback
from typing import Any

from asgisup.types import ASGIApp, Message

logger = logging.getLogger("asgisup.error")


class LifespanFailure(Exception):
    """The app reported (or raised during) a failed startup."""


class Lifespan:
    """Runs the app's lifespan coroutine for the life of the worker.

    ``mode`` is ``on`` (failures are fatal), ``auto`` (an app that does not speak lifespan is
    served without it) or ``off``.
    """

    def __init__(self, app: ASGIApp, mode: str, state: dict[str, Any]) -> None:
        self.app = app
        self.mode = mode
        self.state = state
        self.supported = mode != "off"
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._startup: asyncio.Future[None] | None = None
        self._shutdown: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._started_talking = False
        self._startup_failed = False

    async def startup(self) -> None:
        """Raises LifespanFailure if the app's startup failed."""
        if not self.supported:
            return
        loop = asyncio.get_running_loop()
        self._startup = loop.create_future()
        self._shutdown = loop.create_future()
        self._task = loop.create_task(self._run())
        await self._inbox.put({"type": "lifespan.startup"})
        await self._startup

    async def shutdown(self) -> None:
        if not self.supported or self._task is None or self._task.done():
            return
        assert self._shutdown is not None
        await self._inbox.put({"type": "lifespan.shutdown"})
        await self._shutdown

    async def _run(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as exc:
            if self.mode == "auto" and not self._started_talking:
                # An app without lifespan support typically raises on the unknown scope type.
                logger.info("ASGI 'lifespan' protocol appears unsupported.")
                self.supported = False
                self._settle(None)
            elif self._startup is not None and not self._startup.done():
                # A boot failure: the supervisor shows it once, for all workers.
                text = "".join(traceback.format_exception(exc)).rstrip()
                self._settle(LifespanFailure(f"lifespan startup raised:\n{text}"))
            else:
                if not self._startup_failed:
                    logger.error("Exception in 'lifespan' protocol", exc_info=exc)
                self._settle(None)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
        else:
            self._settle(None)

    def _settle(self, error: Exception | None) -> None:
        if self._startup is not None and not self._startup.done():
            if error is None:
                self._startup.set_result(None)
            else:
                self._startup.set_exception(error)
        if self._shutdown is not None and not self._shutdown.done():
            self._shutdown.set_result(None)

    async def _receive(self) -> Message:
        return await self._inbox.get()

    async def _send(self, message: Message) -> None:
        self._started_talking = True
        kind = message["type"]
        assert self._startup is not None and self._shutdown is not None
        if kind == "lifespan.startup.complete":
            self._startup.set_result(None)
        elif kind == "lifespan.startup.failed":
            self._startup_failed = True
            text = message.get("message", "") or "(no message)"
            self._startup.set_exception(LifespanFailure(f"lifespan startup failed: {text}"))
        elif kind == "lifespan.shutdown.complete":
            self._shutdown.set_result(None)
        elif kind == "lifespan.shutdown.failed":
            logger.error("Lifespan shutdown failed: %s", message.get("message", ""))
            self._shutdown.set_result(None)
        else:
            raise RuntimeError(f"unexpected lifespan message {kind!r}")
