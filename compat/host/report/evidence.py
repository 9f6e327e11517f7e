"""A cell's evidence as lines a person reads: keys, shapes, statistics, and the library's own errors verbatim."""

from __future__ import annotations

from compat.host.kinds import KINDS, common


def evidence_lines(evidence: dict, limit: int = 12) -> list[str]:
    """A cell's evidence as lines a person reads: the lines every kind shares, and its kind's own."""
    kind = KINDS.get(evidence.get("kind"))
    return common.evidence_lines(evidence, kind.evidence(evidence, limit) if kind else [], limit)
