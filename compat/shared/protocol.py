"""The protocol between the host and a worker, and the schema of a finding: one definition both sides import.

Commands go to the worker as JSON lines on its stdin; events come back as JSON lines on its protocol stream:

- ``produce`` ``{library, version, fixtures, recipes: {name: artifact_dir}, user?}`` -> one ``produced`` event per
  recipe ``{recipe, status, seconds}``, then ``done``;
- ``consume`` ``{fixtures, cells: [{id, recipe, producer, consumer, artifact, result, rule?}], user?}`` -> the finding
  of each cell written to its ``result`` path, one ``cell`` event ``{id, status}`` each, then ``done``;
- ``exit``.

The worker announces itself with ``ready`` ``{import_seconds, rss_mb, torch}``, or ``failed`` ``{reason,
missing_module}`` when the library cannot be imported; ``done`` carries ``{rss_mb, peak_rss_mb}``.

A finding is what a consumer saw in one cell. Every finding has ``status`` and ``kind`` (which recipe kind made it,
and so which judge reads it; only a cell whose recipe does not exist has none, and it is an error); the rest depends on the kind (``FIELDS``). The host validates each finding against
this schema when it reads it back (``check_finding``): a result file that does not fit is an error in its cell, not a
wrong verdict. Standard library only: this module runs in every release environment.
"""

from __future__ import annotations

from typing import Any

COMMANDS = ("produce", "consume", "exit")
EVENTS = ("ready", "failed", "produced", "cell", "done")

STATUSES = ("ok", "not-applicable", "broken", "error")
KINDS = ("state-dict", "pretrained", "adapter", "probe", "converter")

# field -> (type, what it holds); every field is optional except kind and status
COMMON: dict[str, tuple[type | tuple[type, ...], str]] = {
    "kind": (str, "the recipe kind that made the finding: one of " + ", ".join(KINDS)),
    "status": (str, "ok (the worker compared), or not-applicable / broken / error with a reason"),
    "reason": (str, "why the cell could not be compared (status other than ok)"),
    "failed": (str, "'producer' when the producing release could not make the artifact"),
    "seconds": ((int, float), "time the worker spent on the cell"),
    "keys": (dict, "key differences: missing, unexpected, shape, dtype (lists of keys or entries)"),
    "load_error": (str, "the consuming release's refusal, verbatim (first lines, then the traceback's tail)"),
    "load_warnings": (list, "warnings and log records emitted while loading, verbatim"),
    "forward_error": (str, "the forward pass failed after loading"),
    "outputs": (dict, "output name -> statistics (max_abs, max_rel, cosine, bitwise, shape_match, or missing)"),
    "tensors_changed_on_load": (list, "keys whose tensors differ after loading from what was saved"),
}
FIELDS: dict[str, dict[str, tuple[type | tuple[type, ...], str]]] = {
    "state-dict": {
        "rule": ((dict, type(None)), "the conversion rule applied before loading, if any (rule set data)"),
        "rule_notes": (list, "what the rule lost or rounded (lossy or inexact steps)"),
    },
    "pretrained": {},
    "adapter": {
        "config": (dict, "adapter config: unknown_fields, new_fields, changed_defaults (or unknown_type)"),
        "adapter": (dict, "changed_output_in_producer, effect_in_producer, effect, applied, vs_own_base"),
    },
    "probe": {
        "probe": (dict, "passed, and detail or error, traceback; warnings"),
    },
    "converter": {
        "conversion": (dict, "self_check, producer_self_check, same_input, differing_outputs"),
    },
}


def check_finding(finding: Any) -> list[str]:
    """What is wrong with ``finding`` against the schema (empty when it fits)."""
    if not isinstance(finding, dict):
        return [f"a finding is a JSON object, got {type(finding).__name__}"]
    problems = []
    kind, status = finding.get("kind"), finding.get("status")
    if kind not in FIELDS and (status == "ok" or kind is not None):  # a cell that never reached a recipe has none
        problems.append(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    if status not in STATUSES:
        problems.append(f"status: expected one of {', '.join(STATUSES)}, got {status!r}")
    if status in ("not-applicable", "broken", "error") and not isinstance(finding.get("reason"), str):
        problems.append(f"reason: a finding with status {status} says why")
    allowed = {**COMMON, **FIELDS.get(kind, {})}
    for name, value in finding.items():
        if name not in allowed:
            problems.append(f"{name}: not a field of a {kind} finding")
        elif not isinstance(value, allowed[name][0]) or isinstance(value, bool) and allowed[name][0] != bool:
            problems.append(f"{name}: expected {_type_name(allowed[name][0])}, got {type(value).__name__}")
    return problems


def _type_name(expected: type | tuple[type, ...]) -> str:
    types = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join("null" if t is type(None) else {"str": "text", "dict": "object", "list": "list",
                                                        "int": "number", "float": "number"}[t.__name__]
                       for t in types)
