"""Judging a file finding: a reader that refuses a file is ``incompatible`` (with its message); one that reads other
tensors, other values or other metadata than were written is ``diverged``, the silent wrong read."""

from __future__ import annotations

from compat.host.kinds.common import Verdict, headline, key_summary
from compat.host.matrix import RecipeSpec
from compat.host.wording import counted

KIND = "file"
FIELDS = {"file": (dict, "tensors (how many were read), metadata_written, metadata_read")}


def judge(finding: dict, recipe: RecipeSpec) -> Verdict:
    if finding.get("load_error"):
        return "incompatible", f"the reader refuses the file: {headline(finding['load_error'])}"
    wrong = []
    key_problems = key_summary(finding.get("keys", {}))
    if key_problems:
        wrong.append(f"other tensors than were written ({key_problems})")
    changed = finding.get("tensors_changed_on_load", [])
    if changed:
        wrong.append(f"{counted(len(changed), 'tensor')} read with other bytes ({', '.join(changed[:3])})")
    file = finding.get("file") or {}
    if file.get("metadata_written", {}) != file.get("metadata_read", {}):
        wrong.append("other metadata than was written")
    if wrong:
        return "diverged", "the file reads without complaint, but wrong: " + "; ".join(wrong)
    return "identical", f"every tensor ({file.get('tensors', 0)}), its dtype, shape and bytes, and the metadata read " \
        "back as written"


def evidence(finding: dict, limit: int = 12) -> list[str]:
    file = finding.get("file") or {}
    if file.get("metadata_written", {}) != file.get("metadata_read", {}):
        return [f"metadata written: {file.get('metadata_written')}", f"metadata read: {file.get('metadata_read')}"]
    return []
