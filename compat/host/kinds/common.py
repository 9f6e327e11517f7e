"""What the kinds' judges share: the key and output summaries, and the ladder from output statistics to a verdict."""

from __future__ import annotations

import json

from compat.host.matrix import RecipeSpec
from compat.host.search import flat_arguments
from compat.host.wording import counted

Verdict = tuple[str, str]  # (verdict, summary)


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


def key_summary(keys: dict) -> str:
    parts = []
    for field, label in (("missing", "missing"), ("unexpected", "unexpected"), ("shape", "shape changes"),
                         ("dtype", "dtype changes")):
        if keys.get(field):
            parts.append(f"{len(keys[field])} {label}")
    return ", ".join(parts)


def refused(finding: dict, keys_refuse: bool) -> Verdict | None:
    """``incompatible`` when the release refused to load (or, where ``keys_refuse``, the keys do not fit) or the
    forward pass failed; ``error`` when nothing was compared; None when there are outputs to judge."""
    key_problems = key_summary(finding.get("keys", {}))
    if finding.get("load_error") or (key_problems and keys_refuse):
        return "incompatible", "; ".join(filter(None, [key_problems, headline(finding.get("load_error") or "")]))
    if finding.get("forward_error"):
        return "incompatible", f"loads, but the forward pass fails: {headline(finding['forward_error'])}"
    if not finding.get("outputs"):
        return "error", "no outputs were compared"
    return None


def failing_outputs(finding: dict, recipe: RecipeSpec) -> dict[str, dict]:
    return {name: stats for name, stats in finding["outputs"].items() if not recipe.tolerance_for(name).allows(stats)}


def by_outputs(finding: dict, recipe: RecipeSpec) -> Verdict:
    """identical, equivalent or diverged, from the output statistics and the recipe's tolerances."""
    outputs = finding["outputs"]
    failing = failing_outputs(finding, recipe)
    changed_on_load = finding.get("tensors_changed_on_load", [])
    key_problems = key_summary(finding.get("keys", {}))
    if all(stats.get("bitwise") for stats in outputs.values()) and not changed_on_load and not key_problems:
        return "identical", "keys, tensors and outputs bitwise equal"
    if not failing:
        worst = worst_max_abs(outputs)
        note = f"; {counted(len(changed_on_load), 'tensor')} changed on load" if changed_on_load else ""
        note += f"; the library converted the keys on load ({key_problems})" if key_problems else ""
        return "equivalent", f"outputs within tolerance (max abs {worst:.3g}){note}"
    return "diverged", "; ".join(output_summary(name, stats) for name, stats in failing.items())


def worst_max_abs(outputs: dict) -> float:
    """The largest max abs difference over a finding's outputs (infinite where one is not a measured number)."""
    return max((_number(s.get("max_abs")) if isinstance(s, dict) else float("inf") for s in outputs.values()),
               default=float("inf"))


def converted(finding: dict, recipe: RecipeSpec, arguments: str) -> Verdict | None:
    """``converted`` where the finding was made under a conversion rule and its outputs agree; ``arguments`` names,
    in the singular, what the rule's ``consumer_args`` set (a model's constructor argument, an adapter config's
    field)."""
    rule = finding.get("rule")
    if not rule or failing_outputs(finding, recipe):
        return None
    parts = (("rename", "rename"), ("rename_patterns", "rename pattern"), ("steps", "step"),
             ("consumer_args", arguments))
    steps = [counted(len(flat_arguments(rule)) if key == "consumer_args" else len(rule[key]), noun)
             for key, noun in parts if rule.get(key)]
    exact = "bitwise equal" if all(s.get("bitwise") for s in finding["outputs"].values()) else "within tolerance"
    # a dropped tensor of ones (an untrained scale) holds values the outputs show were not needed
    lossy = (f"; {counted(len(finding['rule_notes']), 'step')} dropped or rounded values the outputs did not need"
             if finding.get("rule_notes") else "")
    return "converted", f"loads after a rule ({', '.join(steps)}); outputs {exact}{lossy}"


def rule_evidence(finding: dict, limit: int = 12) -> list[str]:
    """The rule a finding was made under and what it lost, in lines."""
    lines = [f"conversion rule: {json.dumps(finding['rule'])[:600]}"] if finding.get("rule") else []
    return lines + [f"rule: {note}" for note in finding.get("rule_notes", [])[:limit]]


def output_summary(name: str, stats: dict) -> str:
    if stats.get("missing"):
        return f"{name}: not produced by the consumer"
    if not stats.get("shape_match", True):
        return f"{name}: shape {stats.get('expected_shape')} -> {stats.get('actual_shape')}"
    return (f"{name}: max abs {_fmt(stats.get('max_abs'))}, max rel {_fmt(stats.get('max_rel'))}, "
            f"cosine {_fmt(stats.get('cosine'), 6)}")


def evidence_lines(finding: dict, own: list[str], limit: int = 12) -> list[str]:
    """The lines every kind shares, with the kind's ``own`` lines after the keys."""
    lines = []
    keys = finding.get("keys", {})
    for field in ("missing", "unexpected"):
        if keys.get(field):
            shown = keys[field][:limit]
            more = f" (+{len(keys[field]) - limit} more)" if len(keys[field]) > limit else ""
            lines.append(f"{field} keys: {', '.join(shown)}{more}")
    for field in ("shape", "dtype"):
        for change in keys.get(field, [])[:limit]:
            lines.append(f"{field} {change['key']}: {change['producer']} -> {change['consumer']}")
    lines += own
    lines += [f"load warning: {message[:300]}" for message in finding.get("load_warnings", [])[:limit]]
    if finding.get("tensors_changed_on_load"):
        lines.append(f"tensors changed on load: {', '.join(finding['tensors_changed_on_load'][:limit])}")
    for name, stats in finding.get("outputs", {}).items():
        if stats.get("shape_match"):
            lines.append(f"output {name}: bitwise {stats.get('bitwise')}, max abs {stats.get('max_abs')}, "
                         f"max rel {stats.get('max_rel')}, cosine {stats.get('cosine')}")
        else:
            lines.append(f"output {name}: {json.dumps(stats)}")
    for field in ("load_error", "forward_error", "reason"):
        if finding.get(field):
            lines.append(f"{field.replace('_', ' ')}:")
            lines += ["  " + line for line in finding[field].strip().splitlines()[:40]]
    return lines


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) else float("inf")


def _fmt(value, digits: int = 3) -> str:
    return value if isinstance(value, str) or value is None else f"{value:.{digits}g}"
