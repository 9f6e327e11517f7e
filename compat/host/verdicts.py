"""From a cell's findings to its verdict, on one ladder (best first).

Pure functions: the worker reports what it saw (keys, load error, tensors after load, output statistics); the host
decides what that means with the matrix's tolerances and known breaks, so changing a tolerance needs no rerun. Each
finding names its kind, and the kind's judge (``compat/host/kinds/``) reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

from compat.host.kinds import KINDS
from compat.host.kinds.common import headline, worst_max_abs
from compat.host.matrix import KnownBreak, RecipeSpec
from compat.host.search import invented_tensors, lost_tensors, rule_summary
from compat.host.wording import counted

LADDER = ("identical", "equivalent", "converted", "known-break", "lossy", "diverged", "incompatible",
          "not-applicable", "error")
GOOD = frozenset({"identical", "equivalent", "converted"})
BAD = frozenset({"lossy", "diverged", "incompatible"})
RED = BAD | {"error"}  # what fails a run unless declared
READS = frozenset({"identical", "equivalent"})  # a release reads a checkpoint as saved

MEANING = {
    "identical": "keys, tensors and outputs bitwise equal",
    "equivalent": "loads; outputs within tolerance",
    "converted": "loads and agrees only after a conversion rule",
    "known-break": "an incompatibility declared in the matrix (the verdict underneath is shown)",
    "lossy": "loads only after a conversion that drops values or invents tensors, and the outputs differ",
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
    finding: dict | None = None  # the finding the verdict rests on, when it is not the cell's own (the search's)


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


def judge(finding: dict, recipe: RecipeSpec, known_break: KnownBreak | None,
          searched: dict | None = None, search_decides: bool = True) -> Judgement:
    """The cell's verdict; ``searched`` is its finding under the conversion the search proposed (``search.py``),
    which decides a cell the plain load left red: ``converted`` when the outputs then agree, ``lossy`` when the
    conversion loads but had to drop values and the outputs differ. Where it must not decide (unreleased code is to
    read what releases saved as saved: a conversion users would have to run is still a break), it is evidence only."""
    underlying, summary = raw_verdict(finding, recipe)
    shown = None
    if searched is not None and underlying in BAD:
        under_rule = raw_verdict(searched, recipe)
        settled = settle(searched, under_rule)
        tried = {"rule": searched.get("rule"), "verdict": (settled or under_rule)[0], "before": summary}
        if settled and search_decides:
            (underlying, summary), shown = settled, dict(searched, search=tried)
        else:
            tried["summary"] = (settled or under_rule)[1]
            shown = dict(finding, search=tried)
            summary += searched_account(settled, under_rule, tried["rule"] or {})
    if known_break is None:
        return Judgement(underlying, underlying, summary, finding=shown)
    if underlying in BAD:
        return Judgement("known-break", underlying, f"{underlying}: {summary}", finding=shown)
    return Judgement(underlying, underlying, summary, stale_known_break=underlying in GOOD, finding=shown)


def best_searched(findings: list[dict | None], recipe: RecipeSpec) -> dict | None:
    """Of a cell's findings under the search's candidates (first, then second), the first one that converts, else the
    lossy one whose outputs moved least, else the first one found: a second candidate that also fails does not
    replace the first one's account."""
    found = [finding for finding in findings if finding is not None]
    judged = [(finding, raw_verdict(finding, recipe)) for finding in found]
    converted = next((finding for finding, verdict in judged if verdict[0] == "converted"), None)
    if converted is not None:
        return converted
    lossy = [finding for finding, verdict in judged if (settle(finding, verdict) or ("",))[0] == "lossy"]
    if lossy:
        return min(lossy, key=lambda finding: worst_max_abs(finding.get("outputs") or {}))
    return found[0] if found else None


def searched_account(settled: tuple[str, str] | None, under_rule: tuple[str, str], rule: dict) -> str:
    """What the search's best conversion did, for the summary of a cell it did not decide: a user reading a red
    cell learns whether a conversion exists, and if one loads, how far apart the outputs still are."""
    if settled:
        return f"; {settled[0]} with the conversion the search found ({rule_summary(rule)})"
    if under_rule[0] == "diverged":
        return f"; the best conversion the search found ({rule_summary(rule)}) loads, the outputs still differ: " \
               f"{under_rule[1]}"
    return f"; the conversion the search tried ({rule_summary(rule)}) does not load either: " \
           f"{headline(under_rule[1], 160)}"


def settle(searched: dict, under_rule: tuple[str, str]) -> tuple[str, str] | None:
    """``converted`` or ``lossy`` from a finding under a searched conversion and its verdict there; None when it
    settled nothing (the conversion did not load, or it dropped no values and still disagrees: names paired wrongly,
    or behaviour moved beyond the layout, which the finding's ``search`` says)."""
    verdict, summary = under_rule
    if verdict == "converted":
        return "converted", f"{summary} (a conversion the search found)"
    lost, invented = lost_tensors(searched), invented_tensors(searched.get("rule"))
    if verdict != "diverged" or not lost:
        return None
    added = f", adds {counted(len(invented), 'tensor')} the producer never had" if invented else ""
    return "lossy", (f"no exact conversion found: the best one loads, but it drops {counted(len(lost), 'tensor')} "
                     "holding values "
                     f"({'; '.join(lost[:3])}{' ...' if len(lost) > 3 else ''}){added}; {summary}")
