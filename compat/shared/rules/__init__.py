"""Conversion rules as data: an ordered list of steps over named tensors, each step with its inverse.

A rule set (YAML, or the same dict in Python)::

    rename:                       # exact names, applied first (old -> new)
      attn_layers.layers.1.1.net.0.0.weight: attn_layers.layers.1.1.ff.0.0.weight
    rename_patterns:              # regular expressions with captures, applied next (cannot be inverted)
      - {pattern: 'layers\\.(\\d+)\\.norm\\.weight', replacement: 'layers.\\1.norm.gamma'}
    steps:                        # then these, in order, by the names the tensors have at that point
      - {op: swap_halves, key: norm_out.linear.weight}          # Flux's swap_scale_shift
      - {op: fuse, keys: [q.weight, k.weight, v.weight], into: qkv.weight}
      - {op: add_constant, key: norm.weight, value: -1.0}       # a norm stored as w - 1
    consumer_args: {use_rmsnorm: true}   # constructor arguments the consuming release needs (matrix cells)

Ops (``ops.py``, one class each): ``rename`` (map), ``rename_pattern``, ``transpose``, ``swap_halves``,
``permute_chunks`` (order, dim), ``interleave`` / ``deinterleave`` (chunks, dim), ``reshape`` (shape, from), ``cast``
(dtype, from), ``add_constant`` (value), ``pack_skew`` / ``unpack_skew`` (a skew-symmetric matrix as its upper
triangle, peft's OFT), ``split`` (key, into, dim, sizes), ``fuse`` (keys, into, dim, sizes), ``drop``
(key, shape, dtype), ``add`` (key, shape, dtype, value). ``inverse()`` reverses the steps and inverts each one, so a
rule set converts both ways; the fields an inverse needs (``from``, ``sizes``, ``shape``) are written by inference.
Tensors are computed one at a time, when they are written. This package runs on the host (``compat convert``) and
inside release environments (a matrix cell with a rule), so it imports only the standard library and numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from compat.shared.rules.base import MAX_ADDED_BYTES, Conversion, Lazy, RuleError
from compat.shared.rules.codec import NUMERIC, UNSIGNED, decode, encode, raw
from compat.shared.rules.ops import OPS, Op, parse_op

__all__ = ["MAX_ADDED_BYTES", "NUMERIC", "OPS", "UNSIGNED", "Conversion", "Lazy", "Op", "RuleError", "RuleSet",
           "decode", "encode", "parse_op", "transform"]


@dataclass
class RuleSet:
    """``steps`` in their data form (what YAML and reports hold); ``ops()`` the checked op objects."""
    steps: list[dict] = field(default_factory=list)
    consumer_args: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_data(cls, data: dict | None, where: str = "rules") -> "RuleSet":
        data = data or {}
        if not isinstance(data, dict):
            raise RuleError(f"{where}: a rule set is a mapping (rename, rename_patterns, steps, consumer_args)")
        unknown = set(data) - {"rename", "rename_patterns", "steps", "transforms", "consumer_args"}
        if unknown:
            raise RuleError(f"{where}: unknown field(s) {sorted(unknown)}; expected rename, rename_patterns, "
                            "steps, consumer_args")
        ops: list[Op] = []
        if data.get("rename"):
            ops.append(parse_op({"op": "rename", "map": data["rename"]}, f"{where}: rename"))
        patterns = data.get("rename_patterns") or []
        if not isinstance(patterns, list):
            raise RuleError(f"{where}: rename_patterns must be a list")
        for index, item in enumerate(patterns):
            if not isinstance(item, dict) or set(item) != {"pattern", "replacement"}:
                raise RuleError(f"{where}: rename_patterns[{index}] needs exactly pattern and replacement")
            ops.append(parse_op({"op": "rename_pattern", **item}, f"{where}: rename_pattern"))
        listed = data.get("steps", data.get("transforms")) or []
        if not isinstance(listed, list):
            raise RuleError(f"{where}: steps must be a list")
        ops += [parse_op(step, f"{where}: steps[{index}]") for index, step in enumerate(listed)]
        consumer_args = data.get("consumer_args") or {}
        if not isinstance(consumer_args, dict) or not all(isinstance(k, str) for k in consumer_args):
            raise RuleError(f"{where}: consumer_args must map argument names to values")
        return cls([op.to_data() for op in ops], dict(consumer_args))

    def ops(self) -> list[Op]:
        return [parse_op(step, f"step {index + 1}") for index, step in enumerate(self.steps)]

    def to_data(self) -> dict:
        """The YAML form: a leading exact rename as ``rename:``, everything else as ``steps:``."""
        data: dict = {}
        steps = list(self.steps)
        if steps and steps[0]["op"] == "rename":
            data["rename"] = dict(steps.pop(0)["map"])
        if steps:
            data["steps"] = [dict(step) for step in steps]
        if self.consumer_args:
            data["consumer_args"] = dict(self.consumer_args)
        return data

    @property
    def renames(self) -> dict[str, str]:
        """Every exact rename, composed (for readers that want one map)."""
        merged: dict[str, str] = {}
        for step in self.steps:
            if step["op"] == "rename":
                for old, new in step["map"].items():
                    source = next((k for k, v in merged.items() if v == old), old)
                    merged[source] = new
        return merged

    def inverse(self) -> "RuleSet":
        """The rule set that undoes this one: steps reversed, each inverted."""
        return RuleSet([op.inverse().to_data() for op in reversed(self.ops())], dict(self.consumer_args))

    def apply(self, layout: list[tuple[str, str, tuple[int, ...]]], read: Callable[[str], bytes]) -> Conversion:
        """Plan the conversion of tensors given as (name, dtype, shape) with ``read(name) -> bytes``."""
        tensors: dict[str, Lazy] = {}
        for name, dtype, shape in layout:
            tensors[name] = Lazy(dtype, tuple(shape), _reader(read, name, dtype, tuple(shape)))
        conversion = Conversion([], {}, [])
        for index, op in enumerate(self.ops()):
            tensors = op.apply(tensors, conversion, f"step {index + 1} ({op.describe()})")
        conversion.planned = tensors
        conversion.layout = [(name, lazy.dtype, lazy.shape) for name, lazy in tensors.items()]
        return conversion


def _reader(read: Callable[[str], bytes], name: str, dtype: str, shape: tuple[int, ...]) -> Callable[[], np.ndarray]:
    return lambda: raw(read(name), dtype, shape)


def transform(data: bytes, dtype: str, shape: tuple[int, ...], op: str) -> bytes:
    """One single-tensor layout op (transpose, swap_halves) on raw bytes: how inference makes its candidates."""
    source = Lazy(dtype, tuple(shape), lambda: raw(data, dtype, tuple(shape)))
    lazy = OPS[op]({"key": ""}).transform(source, Conversion([], {}, []), op)
    return np.ascontiguousarray(lazy.compute()).tobytes()
