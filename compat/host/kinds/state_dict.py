"""Judging a state-dict finding: a strict load, so keys that do not fit are a refusal; a conversion rule that made
the outputs agree is ``converted``."""

from __future__ import annotations

import json

from compat.host.kinds.common import Verdict, by_outputs, converted, refused, rule_evidence
from compat.host.matrix import RecipeSpec

KIND = "state-dict"
FIELDS = {
    "rule": ((dict, type(None)), "the conversion rule applied before loading, if any (rule set data)"),
    "rule_notes": (list, "what the rule lost or rounded (lossy or inexact steps)"),
    "defaults_changed": (dict, "constructor defaults the config relies on that this release changed: dotted path -> "
                               "[producer's value, consumer's value]"),
    "sizing": (dict, "for keys whose shape changed, the constructor argument that builds them at the producer's "
                     "size in this release: key -> {path, value}"),
}


def judge(finding: dict, recipe: RecipeSpec) -> Verdict:
    verdict = refused(finding, keys_refuse=True)
    if verdict:
        return verdict
    rule = finding.get("rule")
    verdict = converted(finding, recipe, "constructor argument")
    if verdict:
        return verdict
    verdict, summary = by_outputs(finding, recipe)
    changed = finding.get("defaults_changed")
    if verdict == "diverged" and changed and not rule:
        summary += "; constructor defaults changed: " + ", ".join(
            f"{path} {json.dumps(old)} -> {json.dumps(new)}" for path, (old, new) in list(changed.items())[:3])
    return verdict, summary


def evidence(finding: dict, limit: int = 12) -> list[str]:
    return rule_evidence(finding, limit)
