"""Event-loop lag: how late a periodic timer fires in a loop, which is how long some callback held the
loop without yielding (synchronous work in a coroutine). A loop that serves HTTP answers nothing for
that long, so this is the figure that shows a starved endpoint before its clients time out (issue 13)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from trainsmart.loop_task import LoopTask

LAG_INTERVAL_S: Final = 0.1


class LoopLagMonitor(LoopTask):
    """A task in the running loop that wakes every `interval` seconds and passes how late it woke to
    `observe`; `start` in the loop to watch, `stop` before the loop ends."""

    def __init__(self, observe: Callable[[float], None], interval: float = LAG_INTERVAL_S) -> None:
        super().__init__("event-loop lag")
        self._observe = observe
        self._interval = interval

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self._interval
            await asyncio.sleep(self._interval)
            self._observe(max(0.0, loop.time() - due))
