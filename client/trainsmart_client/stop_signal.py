"""`stop_requested()`: SIGTERM turned into a flag that a training loop polls at a safe point.

Kubernetes stops a pod (suspend, a sweep's early stop, preemption) with SIGTERM and a grace period before
SIGKILL. Dying on the signal loses everything since the last checkpoint; a flag lets the script save one
and exit 13 (the contract's TERMINATED, which the operator retries and resumes). A handler that was there
before is still called (chained), so a framework's own SIGTERM handling keeps working. The default action
(terminate) is kept only while nobody has asked `stop_requested()`: a script that imports the client just
to report, and never polls the flag, must still stop on SIGTERM instead of hanging until SIGKILL.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)


class StopFlag:
    """Set by SIGTERM once `install` ran (from the main thread: Python only allows handlers there)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._installed = False
        self._previous: Any = None
        self._polled = False

    @property
    def installed(self) -> bool:
        return self._installed

    def is_set(self) -> bool:
        """Whether SIGTERM arrived; from now on SIGTERM only sets the flag (someone is polling it)."""
        self._polled = True
        return self._event.is_set()

    def set(self) -> None:
        self._event.set()

    def install(self) -> bool:
        """Install the SIGTERM handler; False when it cannot be done from this thread (tried again later)."""
        if self._installed:
            return True
        if threading.current_thread() is not threading.main_thread():
            return False
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except (ValueError, OSError) as error:  # an embedded interpreter without signal support
            log.debug("cannot install the SIGTERM handler: %s", error)
            return False
        self._installed = True
        return True

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._event.set()
        if callable(self._previous):
            self._previous(signum, frame)
        elif self._previous == signal.SIG_DFL and not self._polled:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
        else:
            log.info("SIGTERM received: stop_requested() is now True")
