"""Probable renames between the keys a producer saved and the keys a consumer expects.

A pairing is shown to a user (``compat check``, the drafts of ``compat known-breaks``, a red cell's next step) and
tried as a conversion, so it must be plausible: only keys of the same shape pair (or of shapes the caller says fit:
the search's repacked matrices), and among those the names that share the most dotted components at both ends
(``layers.1.1.net.0.weight`` -> ``layers.1.1.ff.0.weight`` before ``layers.3.1.ff.0.weight``), then the most similar
text. Pairs are chosen best first over all keys, not in key order,
so one early key cannot take another key's obvious partner. Name and shape are never proof: ``compat check`` verifies
a pairing by loading it and comparing outputs.
"""

from __future__ import annotations

import difflib
from typing import Callable


def probable_renames(keys: dict, spelling: Callable[[str], str] = lambda key: key,
                     fits: Callable[[list, list], bool] = lambda old, new: old == new) -> list[tuple[str, str]]:
    """(saved key, expected key) pairs from a finding's ``keys`` (``missing``, ``unexpected`` and their ``shapes``);
    none where the shapes were not recorded. Names are compared as ``spelling`` writes them (the conversion search
    writes a norm's ``weight`` and ``gamma`` alike); shapes pair where ``fits(saved shape, expected shape)`` (the
    same shape, unless the search asks for a known repacking)."""
    shapes = keys.get("shapes")
    if not isinstance(shapes, dict):
        return []
    old = [k for k in keys.get("unexpected", []) if k in shapes]
    new = [k for k in keys.get("missing", []) if k in shapes]
    scored = sorted(((score, o, n) for o in old for n in new
                     if fits(shapes[o], shapes[n]) and (score := similarity(spelling(o), spelling(n))) is not None),
                    key=lambda item: (-item[0][0], -item[0][1], item[1], item[2]))
    taken_old, taken_new, pairs = set(), set(), {}
    for _, o, n in scored:
        if o not in taken_old and n not in taken_new:
            taken_old.add(o)
            taken_new.add(n)
            pairs[o] = n
    return [(o, pairs[o]) for o in old if o in pairs]


def similarity(old: str, new: str) -> tuple[int, float] | None:
    """(dotted components shared at the start and at the end, text similarity), or None when the names share
    neither their last component nor most of their text."""
    a, b = old.split("."), new.split(".")
    ends = _common_prefix(a[::-1], b[::-1])
    ends += _common_prefix(a[: len(a) - ends], b[: len(b) - ends])
    ratio = difflib.SequenceMatcher(None, old, new).ratio()
    if a[-1] != b[-1] and ratio < 0.6:
        return None
    return ends, ratio


def _common_prefix(a: list[str], b: list[str]) -> int:
    count = 0
    for x, y in zip(a, b):
        if x != y:
            break
        count += 1
    return count
