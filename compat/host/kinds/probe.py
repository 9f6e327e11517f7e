"""Judging a probe finding: the behaviour passed in this release, or the release's own error."""

from __future__ import annotations

from compat.host.kinds.common import Verdict
from compat.host.matrix import RecipeSpec

KIND = "probe"
FIELDS = {"probe": (dict, "passed, and detail or error, traceback; warnings")}


def judge(finding: dict, recipe: RecipeSpec) -> Verdict:
    probe = finding.get("probe") or {}
    if probe.get("passed"):
        return "identical", f"probe passed{': ' + probe['detail'] if probe.get('detail') else ''}"
    return "incompatible", f"probe fails: {' '.join(probe.get('error', '').split())[:300]}"


def evidence(finding: dict, limit: int = 12) -> list[str]:
    probe = finding.get("probe") or {}
    lines = [f"probe: {'passed' if probe.get('passed') else 'failed'}"
             + (f": {probe['detail']}" if probe.get("detail") else "")]
    if probe.get("error"):
        lines.append("probe error:")
        lines += ["  " + line for line in (probe.get("traceback") or probe["error"]).strip().splitlines()[-20:]]
    lines += [f"probe warning: {message[:300]}" for message in probe.get("warnings", [])[:limit]]
    return lines
