"""Bisect: the releases between a good and a bad one where a cell's verdict changes.

The cell is (recipe, producer = the good release, consumer = each candidate): "from which release on does a
checkpoint saved with the good release stop loading (or start to diverge), and what happens after?". Every stretch of
releases whose two ends have different verdicts is halved until the change is between neighbours, so each change
costs O(log n) environments. A change that is reverted within a stretch whose ends agree cannot be seen this way
(``compat run`` over the range sees it).
"""

from __future__ import annotations

import math
from typing import Callable


def change_points(versions: list[str], verdict_of: Callable[[str], str]) -> tuple[list[int], dict[str, str]]:
    """Indexes of the versions whose verdict differs from the one before them, oldest first, and every verdict
    looked at. ``versions[0]`` is the good end and ``versions[-1]`` the bad end; their verdicts must differ."""
    seen: dict[str, str] = {}

    def at(index: int) -> str:
        if versions[index] not in seen:
            seen[versions[index]] = verdict_of(versions[index])
        return seen[versions[index]]

    last = len(versions) - 1
    if at(0) == at(last):
        raise ValueError(f"{versions[0]} and {versions[-1]} have the same verdict ({at(0)}): nothing to bisect")
    found, stretches = [], [(0, last)]
    while stretches:
        lo, hi = stretches.pop()  # at(lo) != at(hi)
        if hi - lo == 1:
            found.append(hi)
            continue
        mid = (lo + hi) // 2
        stretches += [(a, b) for a, b in ((mid, hi), (lo, mid)) if at(a) != at(b)]
    return sorted(found), seen


def expected_builds(count: int, changes: int = 1) -> int:
    """The two ends plus ceil(log2) of the candidates between them for each change found."""
    return 2 + changes * math.ceil(math.log2(max(count - 1, 1)))
