"""Propose known-break declarations from a report: the smallest set of (producer range x consumer range) rectangles
that covers exactly the cells whose underlying verdict is lossy, diverged or incompatible.

A declaration must never cover a good cell (that cell would fail as a stale known break), so rectangles follow the
grid: cells are split by cause (a release fails on the recipe, the layout changed, or the outputs diverged); for each
cause and producer, the red consumers form runs of consecutive matrix releases; consecutive producers with the same runs
merge into one producer range; identical rectangles of several recipes merge into one declaration. Each
proposal carries the evidence of the cell nearest the diagonal (where the break happens) as its draft reason, and a
link to the upstream diff between the two releases when the library names its source repository. A person still
reads every proposal: the reason is what users see.
"""

from __future__ import annotations

from collections import defaultdict

from packaging.version import Version

from compat.host.search import keys_fit, rule_summary
from compat.host.verdicts import BAD
from compat.host.wording import counted


def propose(cells: list[dict], source: str | None = None, tag_prefix: str = "") -> list[dict]:
    """Declarations (as matrix.yaml mappings) for one library's cells, ordered by producer then consumer."""
    versions = sorted({c["producer"] for c in cells} | {c["consumer"] for c in cells}, key=Version)
    by_recipe: dict[str, dict] = defaultdict(dict)
    for cell in cells:
        by_recipe[cell["recipe"]][(cell["producer"], cell["consumer"])] = cell
    rectangles: dict[tuple, list[str]] = defaultdict(list)
    evidence: dict[tuple, dict] = {}
    for recipe, grid in sorted(by_recipe.items()):
        for cause in CAUSES:
            for rectangle in _rectangles(versions, grid, cause):
                rectangles[rectangle + (cause,)].append(recipe)
                evidence.setdefault(rectangle + (cause,), _nearest_diagonal(rectangle, versions, grid))
    declarations = []
    for rectangle, recipes in sorted(rectangles.items(), key=lambda item: item[0]):
        p_lo, p_hi, c_lo, c_hi, _ = rectangle
        cell = evidence[rectangle]
        declaration = {
            "producers": _spec(versions, p_lo, p_hi),
            "consumers": _spec(versions, c_lo, c_hi),
            "reason": draft_reason(cell),
        }
        if len(recipes) < len(by_recipe):
            declaration["recipes"] = recipes
        if source:
            before, after = sorted((cell["producer"], cell["consumer"]), key=Version)
            if before == after and versions.index(after) > 0:  # a probe: what changed since the release before
                before = versions[versions.index(after) - 1]
            declaration["link"] = f"{source.rstrip('/')}/compare/{tag_prefix}{before}...{tag_prefix}{after}"
        declaration["upstream"] = "undocumented"
        declarations.append(declaration)
    return declarations


CAUSES = ("broken", "layout", "lossy", "diverged")


def cause(cell: dict) -> str | None:
    """Why a cell is red, so that one declaration's reason fits every cell it covers."""
    if cell["underlying"] not in BAD:
        return None
    if cell["evidence"].get("status") == "broken":
        return "broken"
    return cell["underlying"] if cell["underlying"] in ("diverged", "lossy") else "layout"


def _rectangles(versions: list[str], grid: dict, kind: str) -> list[tuple[int, int, int, int]]:
    def bad(producer: str, consumer: str) -> bool:
        return (producer, consumer) in grid and cause(grid[(producer, consumer)]) == kind

    if all(producer == consumer for producer, consumer in grid):  # a probe: one cell per release, on the diagonal
        return [(lo, hi, lo, hi) for lo, hi in _runs([i for i, v in enumerate(versions) if bad(v, v)])]
    rectangles = []
    row_runs = [_runs([i for i, consumer in enumerate(versions) if bad(producer, consumer)]) for producer in versions]
    start = 0
    for index in range(1, len(versions) + 1):
        if index == len(versions) or row_runs[index] != row_runs[start]:
            rectangles += [(start, index - 1, lo, hi) for lo, hi in row_runs[start]]
            start = index
    return rectangles


def _runs(indices: list[int]) -> tuple[tuple[int, int], ...]:
    """Consecutive stretches of sorted indices, as (first, last)."""
    result, start = [], None
    for position, index in enumerate(indices):
        if start is None:
            start = index
        if position + 1 == len(indices) or indices[position + 1] != index + 1:
            result.append((start, index))
            start = None
    return tuple(result)


def _nearest_diagonal(rectangle: tuple, versions: list[str], grid: dict) -> dict:
    p_lo, p_hi, c_lo, c_hi = rectangle
    pairs = [(p, c) for p in range(p_lo, p_hi + 1) for c in range(c_lo, c_hi + 1)
             if (versions[p], versions[c]) in grid]
    p, c = min(pairs, key=lambda pair: (abs(pair[0] - pair[1]), pair))
    return grid[(versions[p], versions[c])]


def _spec(versions: list[str], lo: int, hi: int) -> str:
    lower = f">={versions[lo]}"
    return lower if hi + 1 == len(versions) else f"{lower},<{versions[hi + 1]}"


def draft_reason(cell: dict) -> str:
    """One line a user can act on, from a cell's evidence."""
    evidence = cell["evidence"]
    where = f"{cell['producer']} -> {cell['consumer']}"
    if evidence.get("status") == "broken":
        return f"a release fails on this config ({where}): {evidence.get('reason', '').splitlines()[0]}"
    keys = evidence.get("keys", {})
    tried = evidence.get("search") or {}
    if not keys_fit(evidence):
        missing, unexpected = len(keys.get("missing", [])), len(keys.get("unexpected", []))
        parts = [f"{counted(missing, 'key')} missing, {unexpected} unexpected"]
        if keys.get("shape"):
            change = keys["shape"][0]
            parts.append(f"{counted(len(keys['shape']), 'shape')} changed (e.g. {change['key']} "
                         f"{change['producer']} -> {change['consumer']})")
        if tried.get("verdict"):  # the search's own account, not names that merely look alike
            return (f"layout changed ({where}): {', '.join(parts)}; with the conversion the search found "
                    f"({rule_summary(tried.get('rule') or {})}) it is {tried['verdict']}: {tried.get('summary', '')}")
        if evidence.get("sizing") == {} and keys.get("shape"):
            parts.append("no constructor argument of the consumer builds it at the producer's size")
        # no rename pairs guessed from names here: a reason is what users read, and only the search verifies one
        return f"layout changed ({where}): " + ", ".join(parts)
    if cell["underlying"] == "diverged":
        return f"same keys, different outputs ({where}): {cell['summary'].removeprefix('diverged: ')}"
    return f"{cell['underlying']} ({where}): {cell['summary']}"
