"""Judging a state-dict finding: a strict load, so keys that do not fit are a refusal; a conversion rule that made
the outputs agree is ``converted``."""

from __future__ import annotations

import json

from compat.host.kinds.common import Verdict, by_outputs, failing_outputs, refused
from compat.host.matrix import RecipeSpec
from compat.host.search import flat_arguments

KIND = "state-dict"
FIELDS = {
    "rule": ((dict, type(None)), "the conversion rule applied before loading, if any (rule set data)"),
    "rule_notes": (list, "what the rule lost or rounded (lossy or inexact steps)"),
    "defaults_changed": (dict, "constructor defaults the config relies on that this release changed: dotted path -> "
                               "[producer's value, consumer's value]"),
}
RULE_PARTS = (("rename", "renames"), ("rename_patterns", "rename patterns"), ("steps", "steps"),
              ("consumer_args", "constructor arguments"))


def judge(finding: dict, recipe: RecipeSpec) -> Verdict:
    verdict = refused(finding, keys_refuse=True)
    if verdict:
        return verdict
    rule = finding.get("rule")
    if rule and not failing_outputs(finding, recipe):
        steps = [f"{len(flat_arguments(rule)) if key == 'consumer_args' else len(rule[key])} {label}"
                 for key, label in RULE_PARTS if rule.get(key)]
        exact = "bitwise equal" if all(s.get("bitwise") for s in finding["outputs"].values()) else "within tolerance"
        lossy = f"; {len(finding['rule_notes'])} lossy or inexact step(s)" if finding.get("rule_notes") else ""
        return "converted", f"loads after a rule ({', '.join(steps)}); outputs {exact}{lossy}"
    verdict, summary = by_outputs(finding, recipe)
    changed = finding.get("defaults_changed")
    if verdict == "diverged" and changed and not rule:
        summary += "; constructor defaults changed: " + ", ".join(
            f"{path} {json.dumps(old)} -> {json.dumps(new)}" for path, (old, new) in list(changed.items())[:3])
    return verdict, summary


def evidence(finding: dict, limit: int = 12) -> list[str]:
    lines = [f"conversion rule: {json.dumps(finding['rule'])[:600]}"] if finding.get("rule") else []
    return lines + [f"rule: {note}" for note in finding.get("rule_notes", [])[:limit]]
