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
and so which judge reads it; only a cell whose recipe does not exist has none, and it is an error); the rest depends on the kind (each host kind module's ``FIELDS``). The host validates each finding against
this schema when it reads it back (``check_finding``): a result file that does not fit is an error in its cell, not a
wrong verdict. Standard library only: this module runs in every release environment.
"""

from __future__ import annotations

from typing import Any

COMMANDS = ("produce", "consume", "exit")
EVENTS = ("ready", "failed", "produced", "cell", "done")

STATUSES = ("ok", "not-applicable", "broken", "error")

# field -> (type, what it holds); every field is optional except kind and status
COMMON: dict[str, tuple[type | tuple[type, ...], str]] = {
    "kind": (str, "the recipe kind that made the finding (a module in compat/host/kinds judges it)"),
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
Fields = dict[str, tuple]  # field -> (type or types, what it holds)


def check_finding(finding: Any, kinds: dict[str, Fields]) -> list[str]:
    """What is wrong with ``finding`` against the schema (empty when it fits); ``kinds`` maps each kind to its own
    fields (each host kind module's ``FIELDS``)."""
    if not isinstance(finding, dict):
        return [f"a finding is a JSON object, got {type(finding).__name__}"]
    problems = []
    kind, status = finding.get("kind"), finding.get("status")
    if kind not in kinds and (status == "ok" or kind is not None):  # a cell that never reached a recipe has none
        problems.append(f"kind: expected one of {', '.join(kinds)}, got {kind!r}")
    if status not in STATUSES:
        problems.append(f"status: expected one of {', '.join(STATUSES)}, got {status!r}")
    if status in ("not-applicable", "broken", "error") and not isinstance(finding.get("reason"), str):
        problems.append(f"reason: a finding with status {status} says why")
    allowed = {**COMMON, **kinds.get(kind, {})}
    for name, value in finding.items():
        if name not in allowed:
            problems.append(f"{name}: not a field of a {kind} finding")
        elif not isinstance(value, allowed[name][0]) or isinstance(value, bool) and allowed[name][0] != bool:
            problems.append(f"{name}: expected {_type_name(allowed[name][0])}, got {type(value).__name__}")
    return problems


def _type_name(expected: type | tuple[type, ...]) -> str:
    types = expected if isinstance(expected, tuple) else (expected,)
    names = {"null" if t is type(None) else {"str": "text", "dict": "object", "list": "list", "int": "number",
                                              "float": "number"}[t.__name__] for t in types}
    return " or ".join(sorted(names))
