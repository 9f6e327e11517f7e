"""Find the releases where a library's saved layout or outputs change, by bisection over its release list.

Each probed release produces its artifacts once (one environment, one worker); its *signature* per recipe is what a
checkpoint from it looks like: build status, the key layout (names, shapes, dtypes) and the digest of the outputs on
the shared name-derived weights. Two adjacent releases with different signatures are a change point, and the pair
(release before, release of the change) belongs in the default matrix. Bisection assumes a change is not reverted
between two probed releases with equal signatures; the coarse first pass (``grid``) makes that assumption cheap.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Callable

Signature = tuple


def signature(manifests: dict[str, dict]) -> Signature:
    """A release's signature: per recipe, (status, digest of key layout, digest of outputs)."""
    parts = []
    for recipe, manifest in sorted(manifests.items()):
        status = manifest.get("status", "error")
        if status != "ok":
            parts.append((recipe, status, "", ""))
            continue
        layout = {key: (entry["shape"], entry["dtype"]) for key, entry in manifest["keys"].items()}
        outputs = {name: entry["digest"] for name, entry in manifest.get("outputs", {}).items()}
        parts.append((recipe, status, _digest(layout), _digest(outputs)))
    return tuple(parts)


def describe_change(before: Signature, after: Signature) -> list[str]:
    """What changed between two signatures, per recipe, in words."""
    notes = []
    for old, new in zip(before, after):
        recipe = old[0]
        if old[1] != new[1]:
            notes.append(f"{recipe}: {old[1]} -> {new[1]}")
        elif old[2] != new[2]:
            notes.append(f"{recipe}: key layout changed")
        elif old[3] != new[3]:
            notes.append(f"{recipe}: outputs changed")
    return notes


@dataclass(frozen=True)
class ChangePoint:
    before: str
    after: str
    notes: tuple[str, ...]


def find_changes(versions: list[str], probe: Callable[[list[str]], dict[str, Signature]],
                 grid: int = 16) -> tuple[list[ChangePoint], int]:
    """Change points among sorted ``versions``; ``probe`` computes signatures for a batch of releases.

    Returns the change points and the number of releases probed.
    """
    if len(versions) < 2:
        return [], 0
    step = max(1, (len(versions) - 1) // grid)
    first = sorted(set(range(0, len(versions), step)) | {len(versions) - 1})
    known: dict[int, Signature] = {}

    def probe_indexes(indexes: list[int]) -> None:
        todo = [i for i in indexes if i not in known]
        if todo:
            found = probe([versions[i] for i in todo])
            for i in todo:
                known[i] = found[versions[i]]

    probe_indexes(first)
    intervals = [(lo, hi) for lo, hi in zip(first, first[1:]) if known[lo] != known[hi]]
    changes = []
    while intervals:
        middles = [(lo + hi) // 2 for lo, hi in intervals if hi - lo > 1]
        probe_indexes(middles)
        next_intervals = []
        for lo, hi in intervals:
            if hi - lo == 1:
                changes.append(ChangePoint(versions[lo], versions[hi], tuple(describe_change(known[lo], known[hi]))))
                continue
            mid = (lo + hi) // 2
            next_intervals += [(a, b) for a, b in ((lo, mid), (mid, hi)) if known[a] != known[b]]
        intervals = next_intervals
    return sorted(changes, key=lambda c: versions.index(c.before)), len(known)


def _digest(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
