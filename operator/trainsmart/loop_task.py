"""One coroutine run as a task of the running event loop for the operator's lifetime (the loop-lag
monitor, the periodic malloc trim): started in the loop, cancelled and awaited before the loop ends."""

from __future__ import annotations

import asyncio
import contextlib


class LoopTask:
    """Subclasses give `_run`; `start` in the running loop, `stop` before it ends (idempotent)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        raise NotImplementedError
