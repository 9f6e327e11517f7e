"""Judging a converter finding: the library's converter must give the model's own state dict exactly (max abs 0),
and the same tensors in both releases."""

from __future__ import annotations

from compat.host.kinds.common import Verdict, headline, key_summary
from compat.host.matrix import RecipeSpec
from compat.host.wording import counted

KIND = "converter"
FIELDS = {"conversion": (dict, "self_check, producer_self_check, same_input, differing_outputs")}


def judge(finding: dict, recipe: RecipeSpec) -> Verdict:
    key_problems = key_summary(finding.get("keys", {}))
    if finding.get("load_error"):
        return "incompatible", "; ".join(filter(None, [key_problems, headline(finding["load_error"])]))
    if "conversion" not in finding:
        return "error", "no conversion was compared"
    conversion = finding["conversion"]
    check = conversion.get("self_check", {})
    if not check.get("exact"):
        wrong = check.get("mismatched", []) + check.get("missing", []) + check.get("unexpected", [])
        return "diverged", (f"the converter's output differs from the model's own state dict (max abs "
                            f"{check.get('max_abs', 0):.3g}) in {counted(len(wrong), 'tensor')}, "
                            f"e.g. {', '.join(wrong[:3])}")
    if key_problems:
        return "incompatible", f"the converters give different keys: {key_problems}"
    if conversion.get("differing_outputs"):
        differing = conversion["differing_outputs"]
        cause = "" if conversion.get("same_input") else " (the derived original-layout input differs too)"
        return "diverged", f"{len(differing)} converted tensors differ between the releases{cause}, e.g. " \
            + ", ".join(differing[:3])
    return "identical", "the converter maps the original layout to the model's state dict exactly (max abs 0), " \
        "with identical tensors in both releases"


def evidence(finding: dict, limit: int = 12) -> list[str]:
    conversion = finding.get("conversion") or {}
    check = conversion.get("self_check") or {}
    lines = []
    if check:
        lines.append(f"converter vs the model's own state dict: exact {check.get('exact')}, max abs "
                     f"{check.get('max_abs')}")
    if conversion.get("differing_outputs"):
        lines.append(f"converted tensors that differ between the releases: "
                     f"{', '.join(conversion['differing_outputs'][:limit])}")
    return lines
