"""Judging a pretrained finding: the library loads its own folder and may rename keys on the way (old attention
names), so keys that differ are evidence, not a refusal; what the loaded model computes decides."""

from __future__ import annotations

from compat.host.kinds.common import Verdict, by_outputs, refused
from compat.host.matrix import RecipeSpec

KIND = "pretrained"
FIELDS: dict = {}  # only the fields every kind shares


def judge(finding: dict, recipe: RecipeSpec) -> Verdict:
    return refused(finding, keys_refuse=False) or by_outputs(finding, recipe)


def evidence(finding: dict, limit: int = 12) -> list[str]:
    return []
