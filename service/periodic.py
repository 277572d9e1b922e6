"""One loop for the service's background work: the knowledge sync, the retention purge, the experiment guard,
the sweep for interrupted turns. Each round runs in a thread (it is blocking database work); a failed round (a
database hiccup) is logged and the next one tries again, so one bad round never stops the schedule.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


async def every(pause: float, work: Callable[[], object], what: str) -> None:
    """Run `work` in a thread, then wait `pause` seconds, until cancelled."""
    while True:
        try:
            await asyncio.to_thread(work)
        except Exception:  # noqa: BLE001 - one bad round must not stop the schedule
            log.exception("%s failed; trying again in %.0f s", what, pause)
        await asyncio.sleep(pause)
