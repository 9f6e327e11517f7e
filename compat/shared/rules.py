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

Ops: ``rename`` (map), ``rename_pattern``, ``transpose``, ``swap_halves``, ``permute_chunks`` (order, dim),
``interleave`` / ``deinterleave`` (chunks, dim), ``reshape`` (shape, from), ``cast`` (dtype, from), ``add_constant``
(value), ``split`` (key, into, dim, sizes), ``fuse`` (keys, into, dim, sizes), ``drop`` (key, shape, dtype), ``add``
(key, shape, dtype, value). ``inverse()`` reverses the steps and inverts each one, so a rule set converts both ways;
the fields in parentheses that an inverse needs (``from``, ``sizes``, ``shape``) are written by inference.

Layout ops (transpose, chunks, interleave, reshape, split, fuse) move raw bytes viewed as unsigned integers of the
dtype's width, so they are exact for every dtype, bf16 included: a right rule gives a difference of exactly zero.
Value ops (cast, add_constant) compute, and a conversion reports where they lost information (``Conversion.notes``),
as it reports dropping a tensor that was not all zeros. Tensors are computed one at a time, when they are written.
This module runs on the host (``compat convert``) and inside release environments (a matrix cell with a rule), so it
imports only the standard library and numpy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from compat.shared.dtypes import ITEMSIZE, MAX_DIMS
from compat.shared.errors import CompatError

UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
FLOATS = {"F16": np.float16, "F32": np.float32, "F64": np.float64}
INTEGERS = {"I8": np.int8, "I16": np.int16, "I32": np.int32, "I64": np.int64, "U8": np.uint8, "U16": np.uint16,
            "U32": np.uint32, "U64": np.uint64}
NUMERIC = set(FLOATS) | set(INTEGERS) | {"BF16"}

# op -> (required fields, optional fields); "key"-style fields are checked by type below
OPS: dict[str, tuple[set[str], set[str]]] = {
    "rename": ({"map"}, set()),
    "rename_pattern": ({"pattern", "replacement"}, set()),
    "transpose": ({"key"}, set()),
    "swap_halves": ({"key"}, {"dim"}),
    "permute_chunks": ({"key", "order"}, {"dim"}),
    "interleave": ({"key", "chunks"}, {"dim"}),
    "deinterleave": ({"key", "chunks"}, {"dim"}),
    "reshape": ({"key", "shape"}, {"from"}),
    "cast": ({"key", "dtype"}, {"from"}),
    "add_constant": ({"key", "value"}, set()),
    "split": ({"key", "into"}, {"dim", "sizes"}),
    "fuse": ({"keys", "into"}, {"dim", "sizes"}),
    "drop": ({"key"}, {"shape", "dtype"}),
    "add": ({"key", "shape", "dtype"}, {"value"}),
}


MAX_ADDED_BYTES = 1 << 30  # an added tensor is one value repeated; a rule asking for more than this is hostile


class RuleError(CompatError):
    pass


@dataclass
class Lazy:
    """A tensor that is not computed yet: its layout now, its values (an array of ``shape``) on demand."""
    dtype: str
    shape: tuple[int, ...]
    compute: Callable[[], np.ndarray]


@dataclass
class Conversion:
    """The result of applying a rule set: the new layout now, the tensors one at a time, and what was lost."""
    layout: list[tuple[str, str, tuple[int, ...]]]
    planned: dict[str, Lazy]
    dropped: list[tuple[str, Lazy]]
    notes: list[str] = field(default_factory=list)

    def tensors(self) -> Iterator[bytes]:
        for name, lazy in self.dropped:  # dropping zeros loses nothing; dropping anything else is lossy
            if np.any(lazy.compute()):
                self.notes.append(f"lossy: dropped {name}, which is not all zeros")
        for name, _, _ in self.layout:
            yield np.ascontiguousarray(self.planned[name].compute()).tobytes()


@dataclass
class RuleSet:
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
        steps: list[dict] = []
        if data.get("rename"):
            steps.append({"op": "rename", "map": data["rename"]})
        patterns = data.get("rename_patterns") or []
        if not isinstance(patterns, list):
            raise RuleError(f"{where}: rename_patterns must be a list")
        for index, item in enumerate(patterns):
            if not isinstance(item, dict) or set(item) != {"pattern", "replacement"}:
                raise RuleError(f"{where}: rename_patterns[{index}] needs exactly pattern and replacement")
            steps.append({"op": "rename_pattern", **item})
        listed = data.get("steps", data.get("transforms")) or []
        if not isinstance(listed, list):
            raise RuleError(f"{where}: steps must be a list")
        for index, step in enumerate(listed):
            _check_step(step, f"{where}: steps[{index}]")
        consumer_args = data.get("consumer_args") or {}
        if not isinstance(consumer_args, dict) or not all(isinstance(k, str) for k in consumer_args):
            raise RuleError(f"{where}: consumer_args must map argument names to values")
        for step in steps:
            _check_step(step, f"{where}: {step['op']}")
        return cls(steps + [dict(step) for step in listed], dict(consumer_args))

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
        return RuleSet([_invert(step) for step in reversed(self.steps)], dict(self.consumer_args))

    def apply(self, layout: list[tuple[str, str, tuple[int, ...]]], read: Callable[[str], bytes]) -> Conversion:
        """Plan the conversion of tensors given as (name, dtype, shape) with ``read(name) -> bytes``."""
        tensors: dict[str, Lazy] = {}
        for name, dtype, shape in layout:
            tensors[name] = Lazy(dtype, tuple(shape), _reader(read, name, dtype, tuple(shape)))
        conversion = Conversion([], {}, [])
        for index, step in enumerate(self.steps):
            tensors = _apply_step(step, tensors, conversion, f"step {index + 1} ({_describe(step)})")
        conversion.planned = tensors
        conversion.layout = [(name, lazy.dtype, lazy.shape) for name, lazy in tensors.items()]
        return conversion


def _check_step(step: Any, where: str) -> None:
    if not isinstance(step, dict) or not isinstance(step.get("op"), str) or step["op"] not in OPS:
        raise RuleError(f"{where}: a step needs an op among {', '.join(OPS)}")
    required, optional = OPS[step["op"]]
    missing, extra = required - set(step), set(step) - required - optional - {"op"}
    if missing or extra:
        raise RuleError(f"{where}: {step['op']} needs {sorted(required)}"
                        + (f", may have {sorted(optional)}" if optional else "")
                        + f"; missing {sorted(missing)}, unknown {sorted(extra)}")

    def fail(name: str, expected: str) -> RuleError:
        return RuleError(f"{where}: {step['op']}: {name} must be {expected}, got {step[name]!r}")

    def ints(name: str, minimum: int = 0) -> None:
        value = step[name]
        if not isinstance(value, list) or len(value) > MAX_DIMS or not all(
                _integer(v) and minimum <= v < 2**48 for v in value):
            raise fail(name, f"a list of at most {MAX_DIMS} integers >= {minimum}")

    for name in ("key", "into" if step["op"] == "fuse" else "", "pattern", "replacement"):
        if name in step and not (isinstance(step[name], str) and _name_ok(step[name])):
            raise fail(name, "a string without NUL bytes or unpaired surrogates")
    if "map" in step and not (isinstance(step["map"], dict) and all(
            isinstance(k, str) and isinstance(v, str) and _name_ok(k) and _name_ok(v) for k, v in step["map"].items())):
        raise fail("map", "a mapping of names to names")
    for name in ("keys",) + (("into",) if step["op"] == "split" else ()):
        if name in step and not (isinstance(step[name], list) and len(step[name]) >= 2
                                 and all(isinstance(v, str) and _name_ok(v) for v in step[name])):
            raise fail(name, "a list of at least two names")
    for name in ("shape", "from") if step["op"] in ("reshape", "drop", "add") else ("shape",):
        if name in step:
            ints(name)
    if "sizes" in step:
        ints("sizes", 1)
    if "order" in step:
        ints("order")
        if sorted(step["order"]) != list(range(len(step["order"]))) or len(step["order"]) < 2:
            raise fail("order", "a permutation of 0..n-1 (n >= 2)")
    if "chunks" in step and not (_integer(step["chunks"]) and 2 <= step["chunks"] <= 2**20):
        raise fail("chunks", "an integer >= 2")
    if "dim" in step and not (_integer(step["dim"]) and 0 <= step["dim"] < MAX_DIMS):
        raise fail("dim", f"an integer from 0 to {MAX_DIMS - 1}")
    for name in ("dtype",) + (("from",) if step["op"] == "cast" else ()):
        if name in step and not (isinstance(step[name], str) and step[name] in ITEMSIZE):
            raise fail(name, f"a safetensors dtype ({', '.join(ITEMSIZE)})")
    if step["op"] == "add" and _product(step["shape"]) * ITEMSIZE[step["dtype"]] > MAX_ADDED_BYTES:
        raise fail("shape", f"a tensor of at most {MAX_ADDED_BYTES >> 20} MiB (a new tensor is made in memory)")
    if step["op"] == "cast" and step["dtype"] not in NUMERIC:
        raise fail("dtype", "a numeric dtype")
    for name in ("value",):
        if name in step and (isinstance(step[name], bool) or not isinstance(step[name], (int, float))):
            raise fail(name, "a number")
    if step["op"] == "rename_pattern":
        try:
            _check_template(re.compile(step["pattern"]), step["replacement"])
        except (re.error, RecursionError, OverflowError) as exc:  # checked now, not when a name first matches
            raise RuleError(f"{where}: bad pattern or replacement: {exc}") from None


def _check_template(pattern: re.Pattern, replacement: str) -> None:
    """A replacement that ``re.sub`` would refuse (a group the pattern does not have, a trailing backslash) is an
    error now, not at the first name it matches: the same parser ``re.sub`` uses."""
    try:
        from re import _parser as sre_parse  # Python 3.11+
    except ImportError:  # pragma: no cover - Python 3.10
        import sre_parse
    sre_parse.parse_template(replacement, pattern)


def _product(values: list[int]) -> int:
    total = 1
    for value in values:
        total *= value
    return total


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _name_ok(text: str) -> bool:
    """No NUL byte and no unpaired surrogate: such a name breaks files and terminals far from here."""
    return not re.search("[\x00\ud800-\udfff]", text)


def _describe(step: dict) -> str:
    if step["op"] == "rename":
        return f"rename of {len(step['map'])} name(s)"
    if step["op"] == "rename_pattern":
        return f"rename_pattern {step['pattern']}"
    target = step.get("key") or step.get("into")
    return f"{step['op']} {target}"


def _invert(step: dict) -> dict:
    op = step["op"]
    where = f"cannot invert {_describe(step)}"
    if op == "rename":
        back = {new: old for old, new in step["map"].items()}
        if len(back) != len(step["map"]):
            raise RuleError(f"{where}: two names are renamed to the same name")
        return {"op": "rename", "map": back}
    if op == "rename_pattern":
        raise RuleError(f"{where}: rename patterns cannot be inverted; give exact renames instead")
    if op in ("transpose", "swap_halves"):
        return dict(step)
    if op == "permute_chunks":
        return dict(step, order=[int(i) for i in np.argsort(step["order"])])
    if op in ("interleave", "deinterleave"):
        return dict(step, op="deinterleave" if op == "interleave" else "interleave")
    if op in ("reshape", "cast"):
        if "from" not in step:
            raise RuleError(f"{where}: it needs `from` (the original {'shape' if op == 'reshape' else 'dtype'})")
        field_name = "shape" if op == "reshape" else "dtype"
        return dict(step, **{field_name: step["from"], "from": step[field_name]})
    if op == "add_constant":
        return dict(step, value=-step["value"])
    if op == "split":
        inverse = {"op": "fuse", "keys": list(step["into"]), "into": step["key"]}
        return inverse | {k: step[k] for k in ("dim", "sizes") if k in step}
    if op == "fuse":
        if "sizes" not in step:
            raise RuleError(f"{where}: it needs `sizes` (the rows each fused tensor had)")
        inverse = {"op": "split", "key": step["into"], "into": list(step["keys"])}
        return inverse | {k: step[k] for k in ("dim", "sizes") if k in step}
    if op == "drop":
        if "shape" not in step or "dtype" not in step:
            raise RuleError(f"{where}: it needs the dropped tensor's shape and dtype")
        return {"op": "add", "key": step["key"], "shape": step["shape"], "dtype": step["dtype"], "value": 0}
    return {"op": "drop", "key": step["key"], "shape": step["shape"], "dtype": step["dtype"]}  # add


def _reader(read: Callable[[str], bytes], name: str, dtype: str, shape: tuple[int, ...]) -> Callable[[], np.ndarray]:
    return lambda: np.frombuffer(read(name), dtype=UNSIGNED[ITEMSIZE[dtype]]).reshape(shape)


def _apply_step(step: dict, tensors: dict[str, Lazy], conversion: Conversion, where: str) -> dict[str, Lazy]:
    op = step["op"]
    if op in ("rename", "rename_pattern"):
        renamed: dict[str, Lazy] = {}
        for name, lazy in tensors.items():
            new = step["map"].get(name, name) if op == "rename" else re.sub(step["pattern"], step["replacement"], name)
            if new in renamed:
                raise RuleError(f"{where}: two tensors would be named {new}")
            renamed[new] = lazy
        return renamed
    keys = step["keys"] if op == "fuse" else [step["key"]]
    if op == "add":
        if step["key"] in tensors:
            raise RuleError(f"{where}: {step['key']} already exists")
        shape, dtype, value = tuple(step["shape"]), step["dtype"], step.get("value", 0)
        return tensors | {step["key"]: Lazy(dtype, shape, lambda: encode(np.full(shape, value), dtype))}
    absent = [key for key in keys if key not in tensors]
    if absent:
        conversion.notes.append(f"{where}: no tensor named {', '.join(absent)}; step skipped")
        return tensors
    sources = [tensors[key] for key in keys]
    result = {name: lazy for name, lazy in tensors.items() if name not in keys}
    if op == "drop":
        conversion.dropped.append((step["key"], sources[0]))
        return result
    made = _fuse(step, sources, where) if op == "fuse" else (
        _split(step, sources[0], where) if op == "split" else {step["key"]: _transform(step, sources[0], where,
                                                                                     conversion)})
    clash = set(made) & set(result)
    if clash:
        raise RuleError(f"{where}: {', '.join(sorted(clash))} already exists")
    ordered: dict[str, Lazy] = {}  # the new tensor(s) take the place of the first source
    for name, lazy in tensors.items():
        if name == keys[0]:
            ordered.update(made)
        elif name in result:
            ordered[name] = lazy
    return ordered


def _transform(step: dict, source: Lazy, where: str, conversion: Conversion) -> Lazy:
    op, shape, dtype = step["op"], source.shape, source.dtype
    dim = step.get("dim", 0)
    if op != "transpose" and op not in ("reshape", "cast", "add_constant") and dim >= len(shape):
        raise RuleError(f"{where}: shape {list(shape)} has no dim {dim}")
    if op == "transpose":
        if len(shape) != 2:
            raise RuleError(f"{where}: shape {list(shape)} is not 2-D")
        return Lazy(dtype, shape[::-1], lambda: source.compute().T)
    if op in ("swap_halves", "permute_chunks"):
        order = [1, 0] if op == "swap_halves" else step["order"]
        if shape[dim] % len(order):
            raise RuleError(f"{where}: dim {dim} of {list(shape)} does not split into {len(order)} equal chunks")
        return Lazy(dtype, shape, lambda: _permute(source.compute(), order, dim))
    if op in ("interleave", "deinterleave"):
        if shape[dim] % step["chunks"]:
            raise RuleError(f"{where}: dim {dim} of {list(shape)} is not a multiple of {step['chunks']}")
        function = _interleave if op == "interleave" else _deinterleave
        return Lazy(dtype, shape, lambda: function(source.compute(), step["chunks"], dim))
    if op == "reshape":
        new = tuple(step["shape"])
        if int(np.prod(new)) != int(np.prod(shape)) or ("from" in step and tuple(step["from"]) != shape):
            raise RuleError(f"{where}: cannot reshape {list(shape)} to {list(new)}"
                            + (f" (the rule expects {step['from']})" if "from" in step else ""))
        return Lazy(dtype, new, lambda: source.compute().reshape(new))
    if dtype not in NUMERIC:
        raise RuleError(f"{where}: {dtype} is not a numeric dtype")
    if op == "cast":
        target = step["dtype"]
        if "from" in step and step["from"] != dtype:
            raise RuleError(f"{where}: the rule casts from {step['from']}, the tensor is {dtype}")

        def cast() -> np.ndarray:
            values = decode(source.compute(), dtype)
            out = encode(values, target)
            if not np.array_equal(decode(out, target), values, equal_nan=values.dtype.kind == "f"):
                conversion.notes.append(f"lossy: {where} changed values ({dtype} -> {target})")
            return out
        return Lazy(target, shape, cast)

    def add() -> np.ndarray:
        values = decode(source.compute(), dtype)
        constant = np.asarray(step["value"]).astype(values.dtype)
        out = encode(values + constant, dtype)
        if not np.array_equal(decode(out, dtype) - constant, values):
            conversion.notes.append(f"inexact: {where} rounds some values (adding and subtracting does not return "
                                    "every original value)")
        return out
    return Lazy(dtype, shape, add)


def _split(step: dict, source: Lazy, where: str) -> dict[str, Lazy]:
    dim, names = step.get("dim", 0), step["into"]
    if dim >= len(source.shape):
        raise RuleError(f"{where}: shape {list(source.shape)} has no dim {dim}")
    sizes = step.get("sizes") or [source.shape[dim] // len(names)] * len(names)
    if len(sizes) != len(names) or sum(sizes) != source.shape[dim]:
        raise RuleError(f"{where}: sizes {sizes} do not split dim {dim} of {list(source.shape)} into {len(names)}")
    made, offset = {}, 0
    for name, size in zip(names, sizes):
        shape = source.shape[:dim] + (size,) + source.shape[dim + 1:]
        made[name] = Lazy(source.dtype, shape, _slicer(source, dim, offset, size))
        offset += size
    return made


def _slicer(source: Lazy, dim: int, offset: int, size: int) -> Callable[[], np.ndarray]:
    return lambda: np.take(source.compute(), range(offset, offset + size), axis=dim)


def _fuse(step: dict, sources: list[Lazy], where: str) -> dict[str, Lazy]:
    dim = step.get("dim", 0)
    first = sources[0]
    for source in sources:
        if source.dtype != first.dtype or len(source.shape) != len(first.shape) or dim >= len(source.shape) or \
                source.shape[:dim] + source.shape[dim + 1:] != first.shape[:dim] + first.shape[dim + 1:]:
            raise RuleError(f"{where}: {[list(s.shape) for s in sources]} ({[s.dtype for s in sources]}) "
                            f"do not concatenate along dim {dim}")
    if "sizes" in step and step["sizes"] != [s.shape[dim] for s in sources]:
        raise RuleError(f"{where}: the rule expects sizes {step['sizes']}, the tensors have "
                        f"{[s.shape[dim] for s in sources]}")
    shape = first.shape[:dim] + (sum(s.shape[dim] for s in sources),) + first.shape[dim + 1:]
    return {step["into"]: Lazy(first.dtype, shape,
                               lambda: np.concatenate([s.compute() for s in sources], axis=dim))}


def _permute(array: np.ndarray, order: list[int], dim: int) -> np.ndarray:
    chunks = np.split(array, len(order), axis=dim)
    return np.concatenate([chunks[i] for i in order], axis=dim)


def _interleave(array: np.ndarray, chunks: int, dim: int) -> np.ndarray:
    """[c0; c1; ...] along ``dim`` -> rows c0[0], c1[0], ..., c0[1], c1[1], ..."""
    stacked = np.stack(np.split(array, chunks, axis=dim), axis=dim + 1)
    return stacked.reshape(array.shape)


def _deinterleave(array: np.ndarray, chunks: int, dim: int) -> np.ndarray:
    shape = array.shape
    grouped = array.reshape(shape[:dim] + (shape[dim] // chunks, chunks) + shape[dim + 1:])
    return np.concatenate([np.take(grouped, j, axis=dim + 1) for j in range(chunks)], axis=dim)


def _e4m3fn_values() -> np.ndarray:
    """The 256 values of float8_e4m3fn (bias 7, no infinities, NaN at S.1111.111), by code."""
    codes = np.arange(256)
    exponent, mantissa = (codes >> 3) & 0xF, (codes & 7).astype(np.float64)
    values = np.where(exponent == 0, mantissa / 8 * 2.0 ** -6, (1 + mantissa / 8) * 2.0 ** (exponent - 7))
    values[(exponent == 15) & (mantissa == 7)] = np.nan
    return np.where(codes & 0x80, -values, values).astype(np.float32)


E4M3FN = _e4m3fn_values()


def decode(raw: np.ndarray, dtype: str) -> np.ndarray:
    """Values of a raw (unsigned-integer) array: floats as float64-capable numpy floats, bf16 through float32,
    float8 through float16 (e5m2 is the top byte of a float16) or a table (e4m3fn), bool as 0 and 1."""
    if dtype == "BF16":
        return (raw.astype(np.uint32) << 16).view(np.float32)
    if dtype == "F8_E5M2":
        return (raw.astype(np.uint16) << 8).view(np.float16)
    if dtype == "F8_E4M3":
        return E4M3FN[raw]
    if dtype in FLOATS:
        return raw.view(FLOATS[dtype])
    if dtype == "BOOL":
        return raw.view(np.uint8)
    return raw.view(INTEGERS[dtype])


def encode(values: np.ndarray, dtype: str) -> np.ndarray:
    """Raw (unsigned-integer) array of ``values`` in ``dtype``; bf16 rounds to nearest even like torch."""
    if dtype == "BF16":
        bits = np.asarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        nan = np.isnan(np.asarray(values, dtype=np.float32))
        return np.where(nan, (bits >> 16) | 0x40, rounded).astype(np.uint16)
    if dtype in FLOATS:
        return np.asarray(values).astype(FLOATS[dtype]).view(UNSIGNED[ITEMSIZE[dtype]])
    if dtype in INTEGERS:
        return np.asarray(values).astype(INTEGERS[dtype]).view(UNSIGNED[ITEMSIZE[dtype]])
    return np.asarray(values).astype(UNSIGNED[ITEMSIZE[dtype]])


def transform(data: bytes, dtype: str, shape: tuple[int, ...], op: str) -> bytes:
    """One single-tensor layout op (transpose, swap_halves) on raw bytes: how inference makes its candidates."""
    source = Lazy(dtype, tuple(shape), lambda: np.frombuffer(data, dtype=UNSIGNED[ITEMSIZE[dtype]]).reshape(shape))
    lazy = _transform({"op": op, "key": ""}, source, op, Conversion([], {}, []))
    return np.ascontiguousarray(lazy.compute()).tobytes()
