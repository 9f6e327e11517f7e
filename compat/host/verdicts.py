"""From a cell's findings to its verdict, on one ladder (best first).

Pure functions: the worker reports what it saw (keys, load error, tensors after load, output statistics); the host
decides what that means with the matrix's tolerances and known breaks, so changing a tolerance needs no rerun. Each
finding names its kind, and the kind's judge (``compat/host/kinds/``) reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

from compat.host.kinds import KINDS
from compat.host.kinds.common import headline
from compat.host.matrix import KnownBreak, RecipeSpec

LADDER = ("identical", "equivalent", "converted", "known-break", "diverged", "incompatible", "not-applicable",
          "error")
GOOD = frozenset({"identical", "equivalent", "converted"})
BAD = frozenset({"diverged", "incompatible"})
RED = BAD | {"error"}  # what fails a run unless declared
READS = frozenset({"identical", "equivalent"})  # a release reads a checkpoint as saved

MEANING = {
    "identical": "keys, tensors and outputs bitwise equal",
    "equivalent": "loads; outputs within tolerance",
    "converted": "loads and agrees only after a conversion rule",
    "known-break": "an incompatibility declared in the matrix (the verdict underneath is shown)",
    "diverged": "loads, but outputs differ: the silent break",
    "incompatible": "refuses to load (keys, shapes) or to run",
    "not-applicable": "the recipe cannot be built in one of the two releases",
    "error": "the environment or the run failed",
}


@dataclass(frozen=True)
class Judgement:
    verdict: str
    underlying: str  # the verdict before known breaks were applied
    summary: str
    stale_known_break: bool = False  # declared as broken, but it no longer breaks


def raw_verdict(finding: dict, recipe: RecipeSpec) -> tuple[str, str]:
    """The verdict of one finding before known breaks: its status, or the judge of its kind."""
    status = finding.get("status")
    if status in ("error", "not-applicable"):
        return status, headline(finding["reason"]) if finding.get("reason", "").strip() else status
    if status == "broken":
        return "incompatible", "a release fails on this recipe's config: " + headline(finding.get("reason", ""))
    kind = KINDS.get(finding.get("kind"))
    if kind is None:
        return "error", f"a finding of unknown kind {finding.get('kind')!r}"
    return kind.judge(finding, recipe)


def judge(finding: dict, recipe: RecipeSpec, known_break: KnownBreak | None) -> Judgement:
    underlying, summary = raw_verdict(finding, recipe)
    if known_break is None:
        return Judgement(underlying, underlying, summary)
    if underlying in BAD:
        return Judgement("known-break", underlying, f"{underlying}: {summary}")
    return Judgement(underlying, underlying, summary, stale_known_break=underlying in GOOD)


__all__ = ["BAD", "GOOD", "LADDER", "MEANING", "READS", "RED", "Judgement", "headline", "judge", "raw_verdict"]
