"""Conversion rules as data: renames and tensor transforms, each with its inverse, applied one tensor at a time.

A rule set (YAML or the same dict in Python)::

    rename:                       # exact names, producer -> consumer
      attn_layers.layers.1.1.net.0.0.weight: attn_layers.layers.1.1.ff.0.0.weight
    rename_patterns:              # regular expressions with captures, applied in order (not reversible)
      - {pattern: 'layers\\.(\\d+)\\.norm\\.weight', replacement: 'layers.\\1.norm.gamma'}
    transforms:                   # applied after renaming, by the new name
      - {key: norm_out.linear.weight, op: swap_halves}      # the two halves along dim 0 change places
      - {key: proj.weight, op: transpose}

Transforms work on raw bytes (any dtype, bf16 included) viewed as unsigned integers of the dtype's width, so a
conversion is exact by construction: a right rule gives a difference of exactly zero. This module runs on the host
(``compat convert``) and inside release environments (a matrix cell with a rule), so it imports only the standard
library and numpy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from compat.envside.dtypes import ITEMSIZE
from compat.errors import CompatError

OPS = ("transpose", "swap_halves")
UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


class RuleError(CompatError):
    pass


@dataclass
class RuleSet:
    rename: dict[str, str] = field(default_factory=dict)
    rename_patterns: list[dict] = field(default_factory=list)
    transforms: list[dict] = field(default_factory=list)

    @classmethod
    def from_data(cls, data: dict | None, where: str = "rules") -> "RuleSet":
        data = data or {}
        unknown = set(data) - {"rename", "rename_patterns", "transforms"}
        if unknown:
            raise RuleError(f"{where}: unknown field(s) {sorted(unknown)}; expected rename, rename_patterns, "
                            "transforms")
        rename = data.get("rename") or {}
        if not isinstance(rename, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in rename.items()):
            raise RuleError(f"{where}: rename must map names to names")
        patterns = data.get("rename_patterns") or []
        for index, item in enumerate(patterns):
            if not isinstance(item, dict) or set(item) != {"pattern", "replacement"}:
                raise RuleError(f"{where}: rename_patterns[{index}] needs exactly pattern and replacement")
            try:
                re.compile(item["pattern"])
            except re.error as exc:
                raise RuleError(f"{where}: rename_patterns[{index}]: bad pattern: {exc}") from None
        transforms = data.get("transforms") or []
        for index, item in enumerate(transforms):
            if not isinstance(item, dict) or item.get("op") not in OPS or not isinstance(item.get("key"), str):
                raise RuleError(f"{where}: transforms[{index}] needs a key and an op among {', '.join(OPS)}")
        return cls(dict(rename), list(patterns), list(transforms))

    def to_data(self) -> dict:
        data: dict = {}
        if self.rename:
            data["rename"] = dict(self.rename)
        if self.rename_patterns:
            data["rename_patterns"] = list(self.rename_patterns)
        if self.transforms:
            data["transforms"] = list(self.transforms)
        return data

    @property
    def reversible(self) -> bool:
        return not self.rename_patterns

    def inverse(self) -> "RuleSet":
        """The rule set that undoes this one (transposes and half swaps are their own inverses)."""
        if not self.reversible:
            raise RuleError("rename_patterns cannot be inverted; give exact renames instead")
        back = {new: old for old, new in self.rename.items()}
        return RuleSet(back, [], [dict(t, key=back.get(t["key"], t["key"])) for t in reversed(self.transforms)])

    def new_name(self, name: str) -> str:
        if name in self.rename:
            return self.rename[name]
        for item in self.rename_patterns:
            name = re.sub(item["pattern"], item["replacement"], name)
        return name

    def new_shape(self, name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape a tensor has after this rule (``name`` is its new name)."""
        return tuple(reversed(shape)) if {"key": name, "op": "transpose"} in self.transforms else tuple(shape)

    def op_for(self, name: str) -> str | None:
        return next((t["op"] for t in self.transforms if t["key"] == name), None)

    def apply(self, tensors: list[tuple[str, str, tuple[int, ...]]], read: Callable[[str], bytes]
              ) -> tuple[list[tuple[str, str, tuple[int, ...]]], Iterator[bytes]]:
        """New (name, dtype, shape) list and a lazy iterator over the converted bytes, one tensor at a time."""
        ops = {t["key"]: t["op"] for t in self.transforms}
        plan = []
        for name, dtype, shape in tensors:
            new = self.new_name(name)
            op = ops.get(new)
            out_shape = tuple(reversed(shape)) if op == "transpose" else shape
            if op == "transpose" and len(shape) != 2:
                raise RuleError(f"transpose of {new}: shape {list(shape)} is not 2-D")
            if op == "swap_halves" and (not shape or shape[0] % 2):
                raise RuleError(f"swap_halves of {new}: first dimension of {list(shape)} is not even")
            plan.append((name, new, dtype, shape, out_shape, op))
        names = [p[1] for p in plan]
        if len(set(names)) != len(names):
            raise RuleError("the rules map two tensors to the same name")
        return ([(new, dtype, out) for _, new, dtype, _, out, _ in plan],
                (transform(read(name), dtype, shape, op) for name, _, dtype, shape, _, op in plan))


def transform(data: bytes, dtype: str, shape: tuple[int, ...], op: str | None) -> bytes:
    if op is None:
        return data
    array = np.frombuffer(data, dtype=UNSIGNED[ITEMSIZE[dtype]]).reshape(shape)
    if op == "transpose":
        return np.ascontiguousarray(array.T).tobytes()
    half = shape[0] // 2
    return np.concatenate([array[half:], array[:half]]).tobytes()
