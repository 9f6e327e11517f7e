"""Bisect: the first release between a good and a bad one where a cell's verdict changes.

The cell is (recipe, producer = the good release, consumer = each candidate): "from which release on does a
checkpoint saved with the good release stop loading (or start to diverge)?". Bisection assumes the verdict changes
once between the two ends; it builds O(log n) environments: the two ends, then one per halving.
"""

from __future__ import annotations

import math
from typing import Callable


def first_change(versions: list[str], verdict_of: Callable[[str], str]) -> tuple[int, dict[str, str]]:
    """Index of the first version whose verdict differs from the first version's, and every verdict looked at.

    ``versions[0]`` is the good end and ``versions[-1]`` the bad end; their verdicts must differ.
    """
    seen = {versions[0]: verdict_of(versions[0]), versions[-1]: verdict_of(versions[-1])}
    if seen[versions[0]] == seen[versions[-1]]:
        raise ValueError(f"{versions[0]} and {versions[-1]} have the same verdict ({seen[versions[0]]}): "
                         "nothing to bisect")
    good = seen[versions[0]]
    lo, hi = 0, len(versions) - 1  # verdict(lo) == good, verdict(hi) != good
    while hi - lo > 1:
        mid = (lo + hi) // 2
        seen[versions[mid]] = verdict_of(versions[mid])
        lo, hi = (mid, hi) if seen[versions[mid]] == good else (lo, mid)
    return hi, seen


def expected_builds(count: int) -> int:
    """The two ends plus ceil(log2) of the candidates between them."""
    return 2 + math.ceil(math.log2(max(count - 1, 1)))
