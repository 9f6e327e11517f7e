"""How the runner shares the machine: busy slots handed out in a fixed order, and the memory idle workers may hold.

Pure scheduling policy, apart from the runner's threads and workers, so that it can be read and tested alone.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import threading
from pathlib import Path


class OrderedSlots:
    """At most ``count`` holders at once; when a slot frees, the waiting job with the lowest priority enters, not the
    one the thread scheduler happens to wake.

    The runner orders jobs by library, then producing before consuming: a library's producers finish together, its
    workers consume right after, and idle workers waiting for the rest of their library's producers are never those
    of several libraries at once (which used to exceed the idle-memory budget and cost a second import)."""

    def __init__(self, count: int):
        self._free, self._waiting, self._tickets = count, [], itertools.count()
        self._condition = threading.Condition()

    @contextlib.contextmanager
    def slot(self, priority: tuple):
        entry = (priority, next(self._tickets))
        with self._condition:
            heapq.heappush(self._waiting, entry)
            self._condition.wait_for(lambda: self._free > 0 and self._waiting[0] == entry)
            heapq.heappop(self._waiting)
            self._free -= 1
            self._condition.notify_all()
        try:
            yield
        finally:
            with self._condition:
                self._free += 1
                self._condition.notify_all()


def idle_budget_mb(available_mb: float, jobs: int, peak_mb: float, override: float | None = None) -> float:
    """What idle workers may hold: 60% of the memory available, less room for ``jobs`` busy workers at the largest
    peak seen (negative: keep none)."""
    if override:
        return override
    return min(available_mb * 0.6, available_mb - jobs * peak_mb)


def may_stay_idle(available_mb: float, idle_mb: float, rss_mb: float, jobs: int, peak_mb: float,
                  override: float | None = None) -> bool:
    """Whether a worker holding ``rss_mb`` may wait idle beside idle workers holding ``idle_mb``.

    ``available_mb`` is measured now, with all of them already holding their memory: the budget is computed on what
    they could hold (what is free plus what they hold), so that idle memory is not counted twice. That keeps the
    rule's intent, room for ``jobs`` busy workers at the largest peak seen and idle workers within 60% of the
    memory, and keeps the workers that fit instead of closing them and importing again."""
    return idle_mb + rss_mb <= idle_budget_mb(available_mb + idle_mb + rss_mb, jobs, peak_mb, override)


def available_mb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) / 2**20
