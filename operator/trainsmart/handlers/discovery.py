"""Wait at startup until API discovery serves the operator's CRDs.

Why: Kopf looks its resources up in API discovery when it starts, and again on each CRD event. An
operator started right after `kubectl apply -f crds/` can look a moment before discovery lists them
(Established comes first), and then serves nothing: "Unresolved resources cannot be served", and jobs
left untouched. Waiting here, in the startup handler, happens before Kopf's first lookup (its watchers
start only after the startup handlers succeeded). The wait is bounded: CRDs that never appear are a
deployment mistake, reported as one clear error instead of a crash loop of tracebacks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Final

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S: Final = 120.0
POLL_INTERVAL_S: Final = 0.5
LOG_EVERY_S: Final = 10.0


class CrdsNotServedError(Exception):
    """The CRDs were not served within the wait."""


async def wait_until_served(
    served: Callable[[], Awaitable[set[str]]],
    wanted: Collection[str],
    *,
    what: str,
    limit: float = DEFAULT_TIMEOUT_S,
    interval: float = POLL_INTERVAL_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Return once `served()` (the plurals discovery lists for `what`, a group/version) includes every one
    of `wanted`; raise CrdsNotServedError after `limit` seconds. A failing lookup (the apiserver still
    starting) counts as "not yet"; one log line says what is awaited, repeated every LOG_EVERY_S."""
    start = clock()
    next_log = start
    while True:
        try:
            missing = sorted(set(wanted) - await served())
            problem = ""
        except Exception as error:  # any failure to look means "look again", until the deadline
            missing, problem = sorted(wanted), f" (discovery failed: {error})"
        now = clock()
        if not missing:
            if now > start:
                log.info("API discovery serves %s %s after %.1f s", what, ", ".join(sorted(wanted)), now - start)
            return
        if now - start >= limit:
            raise CrdsNotServedError(
                f"API discovery did not serve {what} {', '.join(missing)} within {limit:.0f} s{problem}: "
                "install the CRDs first (kubectl apply -f crds/, or the Helm chart)"
            )
        if now >= next_log:
            log.info(
                "waiting for API discovery to serve %s %s (CRDs just applied, or not installed?)%s; "
                "giving up in %.0f s",
                what,
                ", ".join(missing),
                problem,
                limit - (now - start),
            )
            next_log = now + LOG_EVERY_S
        await sleep(interval)
