"""The command's clock: when this process loaded dcbulk, so that a summary line states the
whole command's time (imports, cluster start and shutdown included), not just its run's."""
from __future__ import annotations

import time

__all__ = ["STARTED", "command_seconds"]

#: ``time.perf_counter()`` when dcbulk was first imported in this process
STARTED = time.perf_counter()


def command_seconds() -> float:
    """Seconds since dcbulk was first imported in this process."""
    return time.perf_counter() - STARTED
