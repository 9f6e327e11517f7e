"""From a cell's findings to its verdict, on one ladder (best first).

Pure functions: the worker reports what it saw (keys, load error, tensors after load, output statistics); the host
decides what that means with the matrix's tolerances and known breaks, so changing a tolerance needs no rerun.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    status = finding.get("status")
    if status in ("error", "not-applicable"):
        return status, headline(finding["reason"]) if finding.get("reason", "").strip() else status
    if status == "broken":
        return "incompatible", "a release fails on this recipe's config: " + headline(finding.get("reason", ""))
    if "probe" in finding:
        return _probe_verdict(finding["probe"])
    keys = finding.get("keys", {})
    key_problems = _key_summary(keys)
    if "conversion" in finding and not finding.get("load_error"):
        return _conversion_verdict(finding["conversion"], key_problems)
    # a library that renames keys on load, or an adapter whose keys do not fit, may still load (with a warning):
    # what it then computes decides
    loaded = ("adapter" in finding or finding.get("loaded_by_library")) and not finding.get("load_error")
    if finding.get("load_error") or (key_problems and not loaded):
        return "incompatible", "; ".join(filter(None, [key_problems, headline(finding.get("load_error") or "")]))
    if finding.get("forward_error"):
        return "incompatible", f"loads, but the forward pass fails: {headline(finding['forward_error'])}"
    outputs = finding.get("outputs", {})
    if not outputs:
        return "error", "no outputs were compared"
    changed_on_load = finding.get("tensors_changed_on_load", [])
    failing = {name: stats for name, stats in outputs.items() if not recipe.tolerance_for(name).allows(stats)}
    adapter = finding.get("adapter")
    if adapter and adapter.get("changed_output_in_producer") and not adapter.get("applied"):
        warned = f"; the load warned: {finding['load_warnings'][0][:200]}" if finding.get("load_warnings") else \
            "; the load did not warn"
        keys_note = f" ({key_problems} adapter keys)" if key_problems else ""
        return "diverged", f"adapter not applied{keys_note}: the output equals the base model's own output{warned}"
    if adapter and "base" in failing:
        return "diverged", ("the base model's output differs between the releases, so the adapter cannot be judged: "
                            + _output_summary("base", failing["base"]))
    if finding.get("rule") and not failing:
        rule = finding["rule"]
        steps = [f"{len(rule[key])} {label}" for key, label in
                 (("rename", "renames"), ("rename_patterns", "rename patterns"), ("steps", "steps"),
                  ("consumer_args", "constructor arguments")) if rule.get(key)]
        exact = "bitwise equal" if all(s.get("bitwise") for s in outputs.values()) else "within tolerance"
        lossy = f"; {len(finding['rule_notes'])} lossy or inexact step(s)" if finding.get("rule_notes") else ""
        return "converted", f"loads after a rule ({', '.join(steps)}); outputs {exact}{lossy}"
    if all(stats.get("bitwise") for stats in outputs.values()) and not changed_on_load and not key_problems:
        return "identical", "keys, tensors and outputs bitwise equal"
    if not failing:
        worst = max(_number(s.get("max_abs")) for s in outputs.values())
        note = f"; {len(changed_on_load)} tensors changed on load" if changed_on_load else ""
        note += f"; the library converted the keys on load ({key_problems})" if key_problems else ""
        return "equivalent", f"outputs within tolerance (max abs {worst:.3g}){note}"
    return "diverged", "; ".join(_output_summary(name, stats) for name, stats in failing.items())


def judge(finding: dict, recipe: RecipeSpec, known_break: KnownBreak | None) -> Judgement:
    underlying, summary = raw_verdict(finding, recipe)
    if known_break is None:
        return Judgement(underlying, underlying, summary)
    if underlying in BAD:
        return Judgement("known-break", underlying, f"{underlying}: {summary}")
    return Judgement(underlying, underlying, summary, stale_known_break=underlying in GOOD)


def headline(message: str, limit: int = 400) -> str:
    """The part of an error message that says what went wrong. A first line that only announces the rest
    (``RuntimeError: Error(s) in loading state_dict for TransformerWrapper:``) is joined with the line after it."""
    lines = []
    for line in message.splitlines():  # the first two lines that say something; a traceback can be long
        if line.strip():
            lines.append(line.strip())
            if len(lines) == 2:
                break
    if not lines:
        return ""
    text = f"{lines[0]} {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _probe_verdict(probe: dict) -> tuple[str, str]:
    if probe.get("passed"):
        return "identical", f"probe passed{': ' + probe['detail'] if probe.get('detail') else ''}"
    return "incompatible", f"probe fails: {' '.join(probe.get('error', '').split())[:300]}"


def _conversion_verdict(conversion: dict, key_problems: str) -> tuple[str, str]:
    check = conversion.get("self_check", {})
    if not check.get("exact"):
        wrong = check.get("mismatched", []) + check.get("missing", []) + check.get("unexpected", [])
        return "diverged", (f"the converter's output differs from the model's own state dict (max abs "
                            f"{check.get('max_abs', 0):.3g}) in {len(wrong)} tensors, e.g. {', '.join(wrong[:3])}")
    if key_problems:
        return "incompatible", f"the converters give different keys: {key_problems}"
    if conversion.get("differing_outputs"):
        differing = conversion["differing_outputs"]
        cause = "" if conversion.get("same_input") else " (the derived original-layout input differs too)"
        return "diverged", f"{len(differing)} converted tensors differ between the releases{cause}, e.g. " \
            + ", ".join(differing[:3])
    return "identical", "the converter maps the original layout to the model's state dict exactly (max abs 0), " \
        "with identical tensors in both releases"


def _key_summary(keys: dict) -> str:
    parts = []
    for field, label in (("missing", "missing"), ("unexpected", "unexpected"), ("shape", "shape changes"),
                         ("dtype", "dtype changes")):
        if keys.get(field):
            parts.append(f"{len(keys[field])} {label}")
    return ", ".join(parts)


def _output_summary(name: str, stats: dict) -> str:
    if stats.get("missing"):
        return f"{name}: not produced by the consumer"
    if not stats.get("shape_match", True):
        return f"{name}: shape {stats.get('expected_shape')} -> {stats.get('actual_shape')}"
    return (f"{name}: max abs {_fmt(stats.get('max_abs'))}, max rel {_fmt(stats.get('max_rel'))}, "
            f"cosine {_fmt(stats.get('cosine'), 6)}")


def _number(value) -> float:
    return float(value) if not isinstance(value, str) else float("inf")


def _fmt(value, digits: int = 3) -> str:
    return value if isinstance(value, str) or value is None else f"{value:.{digits}g}"
