"""A cell's evidence as lines a person reads: keys, shapes, statistics, and the library's own errors verbatim."""

from __future__ import annotations

import json


def evidence_lines(evidence: dict, limit: int = 12) -> list[str]:
    """A cell's evidence as lines a person reads: keys, shapes, statistics, and the library's own errors verbatim."""
    lines = []
    keys = evidence.get("keys", {})
    for field in ("missing", "unexpected"):
        if keys.get(field):
            shown = keys[field][:limit]
            more = f" (+{len(keys[field]) - limit} more)" if len(keys[field]) > limit else ""
            lines.append(f"{field} keys: {', '.join(shown)}{more}")
    for field in ("shape", "dtype"):
        for change in keys.get(field, [])[:limit]:
            lines.append(f"{field} {change['key']}: {change['producer']} -> {change['consumer']}")
    config = evidence.get("config") or {}
    for field, label in (("unknown_fields", "adapter config fields this release does not know"),
                         ("new_fields", "fields this release has that the producer did not write")):
        if config.get(field):
            lines.append(f"{label}: {', '.join(config[field][:limit])}")
    for name, change in (config.get("changed_defaults") or {}).items():
        lines.append(f"default of {name} changed: {change['producer']!r} -> {change['consumer']!r}")
    lines += [f"load warning: {message[:300]}" for message in evidence.get("load_warnings", [])[:limit]]
    if evidence.get("adapter"):
        own = evidence["adapter"].get("vs_own_base", {})
        lines.append(f"adapter applied: {evidence['adapter'].get('applied')} (output vs this release's base: max abs "
                     f"{own.get('max_abs')}, cosine {own.get('cosine')})")
    if evidence.get("rule"):
        lines.append(f"conversion rule: {json.dumps(evidence['rule'])[:600]}")
    lines += [f"rule: {note}" for note in evidence.get("rule_notes", [])[:limit]]
    if evidence.get("tensors_changed_on_load"):
        lines.append(f"tensors changed on load: {', '.join(evidence['tensors_changed_on_load'][:limit])}")
    for name, stats in evidence.get("outputs", {}).items():
        if stats.get("shape_match"):
            lines.append(f"output {name}: bitwise {stats.get('bitwise')}, max abs {stats.get('max_abs')}, "
                         f"max rel {stats.get('max_rel')}, cosine {stats.get('cosine')}")
        else:
            lines.append(f"output {name}: {json.dumps(stats)}")
    for field in ("load_error", "forward_error", "reason"):
        if evidence.get(field):
            lines.append(f"{field.replace('_', ' ')}:")
            lines += ["  " + line for line in evidence[field].strip().splitlines()[:40]]
    return lines
