"""Judging an adapter finding: a load that warns and then does nothing is the break to catch. The adapter must
still move the output (``adapter.applied``), and the base model's own output must agree between the releases before
the adapted output can be judged."""

from __future__ import annotations

from compat.host.kinds.common import (
    Verdict,
    by_outputs,
    converted,
    failing_outputs,
    key_summary,
    output_summary,
    refused,
    rule_evidence,
)
from compat.host.matrix import RecipeSpec

KIND = "adapter"
FIELDS = {
    "config": (dict, "adapter config: unknown_fields, new_fields, changed_defaults (or unknown_type)"),
    "adapter": (dict, "changed_output_in_producer, effect_in_producer, effect, applied, vs_own_base"),
    "rule": ((dict, type(None)), "the conversion rule applied to the saved adapter before loading, if any"),
    "rule_notes": (list, "what the rule lost or rounded (lossy or inexact steps)"),
    "expected_constants": (dict, "adapter keys the saved file lacks that this release's freshly built adapter "
                                 "starts at one value, with that value (peft: known before loading)"),
}


def judge(finding: dict, recipe: RecipeSpec) -> Verdict:
    verdict = refused(finding, keys_refuse=False)
    if verdict:
        return verdict
    adapter = finding.get("adapter") or {}
    if adapter.get("changed_output_in_producer") and not adapter.get("applied"):
        warned = f"; the load warned: {finding['load_warnings'][0][:200]}" if finding.get("load_warnings") else \
            "; the load did not warn"
        key_problems = key_summary(finding.get("keys", {}))
        keys_note = f" ({key_problems} adapter keys)" if key_problems else ""
        return "diverged", f"adapter not applied{keys_note}: the output equals the base model's own output{warned}"
    failing = failing_outputs(finding, recipe)
    if "base" in failing:
        return "diverged", ("the base model's output differs between the releases, so the adapter cannot be judged: "
                            + output_summary("base", failing["base"]))
    return converted(finding, recipe, "config field") or by_outputs(finding, recipe)


def evidence(finding: dict, limit: int = 12) -> list[str]:
    lines = []
    config = finding.get("config") or {}
    for field, label in (("unknown_fields", "adapter config fields this release does not know"),
                         ("new_fields", "fields this release has that the producer did not write")):
        if config.get(field):
            lines.append(f"{label}: {', '.join(config[field][:limit])}")
    for name, change in (config.get("changed_defaults") or {}).items():
        lines.append(f"default of {name} changed: {change['producer']!r} -> {change['consumer']!r}")
    if finding.get("adapter"):
        own = finding["adapter"].get("vs_own_base", {})
        lines.append(f"adapter applied: {finding['adapter'].get('applied')} (output vs this release's base: max abs "
                     f"{own.get('max_abs')}, cosine {own.get('cosine')})")
    return lines + rule_evidence(finding, limit)
