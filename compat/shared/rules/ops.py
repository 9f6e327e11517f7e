"""The rule ops, one class each: its fields, its checks, its inverse, and how it changes the tensors.

Layout ops (transpose, swap_halves, permute_chunks, interleave, deinterleave, reshape, split, fuse) move raw bytes, so
a right rule is exact for every dtype. Value ops (cast, add_constant, pack_skew, unpack_skew) compute, and say in the conversion's notes where
they lost information. Adding an op is one class here, listed in ``OPS``.
"""

from __future__ import annotations

import re

import numpy as np

from compat.shared.dtypes import ITEMSIZE
from compat.shared.rules.base import (
    CHUNKS,
    DIM,
    DTYPE,
    MAPPING,
    MAX_ADDED_BYTES,
    NAME,
    NAMES,
    NUMBER,
    ORDER,
    SHAPE,
    SIZES,
    Conversion,
    Lazy,
    Op,
    RuleError,
    TensorOp,
)
from compat.shared.rules.codec import FLOATS, NUMERIC, decode, encode


class Rename(Op):
    name, required = "rename", {"map": MAPPING}

    def describe(self) -> str:
        return f"rename of {len(self.fields['map'])} name(s)"

    def inverse(self) -> Op:
        back = {new: old for old, new in self.fields["map"].items()}
        if len(back) != len(self.fields["map"]):
            raise RuleError(f"cannot invert {self.describe()}: two names are renamed to the same name")
        return Rename({"map": back})

    def new_name(self, name: str) -> str:
        return self.fields["map"].get(name, name)

    def apply(self, tensors: dict[str, Lazy], conversion: Conversion, where: str) -> dict[str, Lazy]:
        renamed: dict[str, Lazy] = {}
        for name, lazy in tensors.items():
            new = self.new_name(name)
            if new in renamed:
                raise RuleError(f"{where}: two tensors would be named {new}")
            renamed[new] = lazy
        return renamed


class RenamePattern(Rename):
    name, required = "rename_pattern", {"pattern": NAME, "replacement": NAME}

    def check(self, where: str) -> None:
        """A replacement ``re.sub`` would refuse (a group the pattern lacks, a trailing backslash) is an error now, not
        at the first name it matches: checked with the parser ``re.sub`` uses."""
        try:
            from re import _parser as sre_parse  # Python 3.11+
        except ImportError:  # pragma: no cover - Python 3.10
            import sre_parse
        try:
            sre_parse.parse_template(self.fields["replacement"], re.compile(self.fields["pattern"]))
        except (re.error, RecursionError, OverflowError) as exc:
            raise RuleError(f"{where}: bad pattern or replacement: {exc}") from None

    def describe(self) -> str:
        return f"rename_pattern {self.fields['pattern']}"

    def inverse(self) -> Op:
        raise RuleError(f"cannot invert {self.describe()}: rename patterns cannot be inverted; give exact renames "
                        "instead")

    def new_name(self, name: str) -> str:
        return re.sub(self.fields["pattern"], self.fields["replacement"], name)


class Transpose(TensorOp):
    name, required = "transpose", {"key": NAME}

    def inverse(self) -> Op:
        return self

    def transform(self, source: Lazy, conversion: Conversion, where: str) -> Lazy:
        if len(source.shape) != 2:
            raise RuleError(f"{where}: shape {list(source.shape)} is not 2-D")
        return Lazy(source.dtype, source.shape[::-1], lambda: source.compute().T)


class PermuteChunks(TensorOp):
    name, required, optional = "permute_chunks", {"key": NAME, "order": ORDER}, {"dim": DIM}

    def order(self) -> list[int]:
        return self.fields["order"]

    def inverse(self) -> Op:
        return PermuteChunks(dict(self.fields, order=[int(i) for i in np.argsort(self.fields["order"])]))

    def transform(self, source: Lazy, conversion: Conversion, where: str) -> Lazy:
        dim, order = self.dim_of(source, where), self.order()
        if source.shape[dim] % len(order):
            raise RuleError(f"{where}: dim {dim} of {list(source.shape)} does not split into {len(order)} equal chunks")

        def permute() -> np.ndarray:
            chunks = np.split(source.compute(), len(order), axis=dim)
            return np.concatenate([chunks[i] for i in order], axis=dim)
        return Lazy(source.dtype, source.shape, permute)


class SwapHalves(PermuteChunks):
    """Flux's ``swap_scale_shift``: the two halves of a tensor change places."""
    name, required, optional = "swap_halves", {"key": NAME}, {"dim": DIM}

    def order(self) -> list[int]:
        return [1, 0]

    def inverse(self) -> Op:
        return self


class Interleave(TensorOp):
    """[c0; c1; ...] along ``dim`` -> rows c0[0], c1[0], ..., c0[1], c1[1], ...; with ``groups``, within each of that
    many equal blocks (one per attention head: rotary embeddings that pair dimension i with i + n/2 against ones that
    pair 2i with 2i + 1, the permutation transformers' Llama converter applies to q and k)."""
    name, required, optional = "interleave", {"key": NAME, "chunks": CHUNKS}, {"dim": DIM, "groups": CHUNKS}

    def inverse(self) -> Op:
        return Deinterleave(self.fields)

    @staticmethod
    def rearrange(array: np.ndarray, chunks: int, dim: int) -> np.ndarray:
        stacked = np.stack(np.split(array, chunks, axis=dim), axis=dim + 1)
        return stacked.reshape(array.shape)

    def transform(self, source: Lazy, conversion: Conversion, where: str) -> Lazy:
        dim, chunks, groups = self.dim_of(source, where), self.fields["chunks"], self.fields.get("groups", 1)
        if source.shape[dim] % (chunks * groups):
            raise RuleError(f"{where}: dim {dim} of {list(source.shape)} is not a multiple of {chunks * groups}")

        def rearranged() -> np.ndarray:
            blocks = np.split(source.compute(), groups, axis=dim)
            return np.concatenate([self.rearrange(block, chunks, dim) for block in blocks], axis=dim)
        return Lazy(source.dtype, source.shape, rearranged)


class Deinterleave(Interleave):
    name = "deinterleave"

    def inverse(self) -> Op:
        return Interleave(self.fields)

    @staticmethod
    def rearrange(array: np.ndarray, chunks: int, dim: int) -> np.ndarray:
        shape = array.shape
        grouped = array.reshape(shape[:dim] + (shape[dim] // chunks, chunks) + shape[dim + 1:])
        return np.concatenate([np.take(grouped, j, axis=dim + 1) for j in range(chunks)], axis=dim)


class Reshape(TensorOp):
    name, required, optional = "reshape", {"key": NAME, "shape": SHAPE}, {"from": SHAPE}

    def inverse(self) -> Op:
        if "from" not in self.fields:
            raise RuleError(f"cannot invert {self.describe()}: it needs `from` (the original shape)")
        return Reshape(dict(self.fields, shape=self.fields["from"], **{"from": self.fields["shape"]}))

    def transform(self, source: Lazy, conversion: Conversion, where: str) -> Lazy:
        new, old = tuple(self.fields["shape"]), self.fields.get("from")
        if int(np.prod(new)) != int(np.prod(source.shape)) or (old is not None and tuple(old) != source.shape):
            raise RuleError(f"{where}: cannot reshape {list(source.shape)} to {list(new)}"
                            + (f" (the rule expects {old})" if old is not None else ""))
        return Lazy(source.dtype, new, lambda: source.compute().reshape(new))


def _numeric(source: Lazy, where: str) -> None:
    if source.dtype not in NUMERIC:
        raise RuleError(f"{where}: {source.dtype} is not a numeric dtype")


class Cast(TensorOp):
    name, required, optional = "cast", {"key": NAME, "dtype": DTYPE}, {"from": DTYPE}

    def check(self, where: str) -> None:
        if self.fields["dtype"] not in NUMERIC:
            raise self.fail(where, "dtype", "a numeric dtype")

    def inverse(self) -> Op:
        if "from" not in self.fields:
            raise RuleError(f"cannot invert {self.describe()}: it needs `from` (the original dtype)")
        return Cast(dict(self.fields, dtype=self.fields["from"], **{"from": self.fields["dtype"]}))

    def transform(self, source: Lazy, conversion: Conversion, where: str) -> Lazy:
        _numeric(source, where)
        target, dtype = self.fields["dtype"], source.dtype
        if self.fields.get("from", dtype) != dtype:
            raise RuleError(f"{where}: the rule casts from {self.fields['from']}, the tensor is {dtype}")

        def cast() -> np.ndarray:
            values = decode(source.compute(), dtype)
            out = encode(values, target)
            if not np.array_equal(decode(out, target), values, equal_nan=values.dtype.kind == "f"):
                conversion.notes.append(f"lossy: {where} changed values ({dtype} -> {target})")
            return out
        return Lazy(target, source.shape, cast)


class AddConstant(TensorOp):
    """A norm stored with an offset (``w - 1``): every value moves by ``value``."""
    name, required = "add_constant", {"key": NAME, "value": NUMBER}

    def inverse(self) -> Op:
        return AddConstant(dict(self.fields, value=-self.fields["value"]))

    def transform(self, source: Lazy, conversion: Conversion, where: str) -> Lazy:
        _numeric(source, where)
        dtype = source.dtype

        def add() -> np.ndarray:
            values = decode(source.compute(), dtype)
            constant = np.asarray(self.fields["value"]).astype(values.dtype)
            out = encode(values + constant, dtype)
            if not np.array_equal(decode(out, dtype) - constant, values):
                conversion.notes.append(f"inexact: {where} rounds some values (adding and subtracting does not "
                                        "return every original value)")
            return out
        return Lazy(dtype, source.shape, add)


class PackSkew(TensorOp):
    """A stack of square matrices (..., n, n) -> the strict upper triangle of their skew-symmetric parts,
    (..., n(n-1)/2), row by row (``triu_indices(n, n, 1)``). How peft 0.16.0 stores OFT's rotation (``oft_R.weight``)
    where 0.14.0-0.15.2 stored the full matrix (``oft_r``, of which the Cayley transform reads only
    ``(A - A^T) / 2``): the symmetric part is discarded because nothing reads it. A value op (halving and
    subtracting), exact in the float formats: the same operations the old release applies."""
    name, required = "pack_skew", {"key": NAME}

    def inverse(self) -> Op:
        return UnpackSkew(self.fields)

    def transform(self, source: Lazy, conversion: Conversion, where: str) -> Lazy:
        _float(source, where)
        if len(source.shape) < 2 or source.shape[-1] != source.shape[-2]:
            raise RuleError(f"{where}: shape {list(source.shape)} is not a stack of square matrices")
        size, dtype = source.shape[-1], source.dtype
        rows, cols = np.triu_indices(size, 1)

        def pack() -> np.ndarray:
            values = decode(source.compute(), dtype)
            half = np.asarray(0.5, dtype=values.dtype)
            return encode(half * (values - np.swapaxes(values, -1, -2))[..., rows, cols], dtype)
        return Lazy(dtype, source.shape[:-2] + (len(rows),), pack)


class UnpackSkew(TensorOp):
    """The inverse of ``pack_skew``: (..., n(n-1)/2) -> the skew-symmetric (..., n, n) with that upper triangle
    (``S[i, j] = v``, ``S[j, i] = -v``, zeros on the diagonal), which ``pack_skew`` packs back to the same values."""
    name, required = "unpack_skew", {"key": NAME}

    def inverse(self) -> Op:
        return PackSkew(self.fields)

    def transform(self, source: Lazy, conversion: Conversion, where: str) -> Lazy:
        _float(source, where)
        count = source.shape[-1] if source.shape else 0
        size = int(round((1 + (1 + 8 * count) ** 0.5) / 2))
        if not source.shape or size * (size - 1) // 2 != count or count == 0:
            raise RuleError(f"{where}: shape {list(source.shape)} does not end in n(n-1)/2 values")
        dtype = source.dtype
        rows, cols = np.triu_indices(size, 1)

        def unpack() -> np.ndarray:
            values = decode(source.compute(), dtype)
            matrix = np.zeros(values.shape[:-1] + (size, size), dtype=values.dtype)
            matrix[..., rows, cols] = values
            matrix[..., cols, rows] = -values
            return encode(matrix, dtype)
        return Lazy(dtype, source.shape[:-1] + (size, size), unpack)


def _float(source: Lazy, where: str) -> None:
    if source.dtype not in FLOATS and source.dtype != "BF16":
        raise RuleError(f"{where}: {source.dtype} is not a floating-point dtype")


class Split(Op):
    name, required, optional = "split", {"key": NAME, "into": NAMES}, {"dim": DIM, "sizes": SIZES}

    def inverse(self) -> Op:
        return Fuse({"keys": list(self.fields["into"]), "into": self.fields["key"],
                     **{k: self.fields[k] for k in ("dim", "sizes") if k in self.fields}})

    def make(self, sources: list[Lazy], conversion: Conversion, where: str) -> dict[str, Lazy]:
        source, names, dim = sources[0], self.fields["into"], self.fields.get("dim", 0)
        if dim >= len(source.shape):
            raise RuleError(f"{where}: shape {list(source.shape)} has no dim {dim}")
        sizes = self.fields.get("sizes") or [source.shape[dim] // len(names)] * len(names)
        if len(sizes) != len(names) or sum(sizes) != source.shape[dim]:
            raise RuleError(f"{where}: sizes {sizes} do not split dim {dim} of {list(source.shape)} into "
                            f"{len(names)}")
        made, offset = {}, 0
        for name, size in zip(names, sizes):
            shape = source.shape[:dim] + (size,) + source.shape[dim + 1:]
            made[name] = Lazy(source.dtype, shape, _slicer(source, dim, offset, size))
            offset += size
        return made


def _slicer(source: Lazy, dim: int, offset: int, size: int):
    return lambda: np.take(source.compute(), range(offset, offset + size), axis=dim)


class Fuse(Op):
    name, required, optional = "fuse", {"keys": NAMES, "into": NAME}, {"dim": DIM, "sizes": SIZES}

    def inverse(self) -> Op:
        if "sizes" not in self.fields:
            raise RuleError(f"cannot invert {self.describe()}: it needs `sizes` (the rows each fused tensor had)")
        return Split({"key": self.fields["into"], "into": list(self.fields["keys"]),
                      **{k: self.fields[k] for k in ("dim", "sizes") if k in self.fields}})

    def sources(self) -> list[str]:
        return list(self.fields["keys"])

    def make(self, sources: list[Lazy], conversion: Conversion, where: str) -> dict[str, Lazy]:
        dim, first = self.fields.get("dim", 0), sources[0]
        for source in sources:
            if source.dtype != first.dtype or len(source.shape) != len(first.shape) or dim >= len(source.shape) or \
                    source.shape[:dim] + source.shape[dim + 1:] != first.shape[:dim] + first.shape[dim + 1:]:
                raise RuleError(f"{where}: {[list(s.shape) for s in sources]} ({[s.dtype for s in sources]}) "
                                f"do not concatenate along dim {dim}")
        if "sizes" in self.fields and self.fields["sizes"] != [s.shape[dim] for s in sources]:
            raise RuleError(f"{where}: the rule expects sizes {self.fields['sizes']}, the tensors have "
                            f"{[s.shape[dim] for s in sources]}")
        shape = first.shape[:dim] + (sum(s.shape[dim] for s in sources),) + first.shape[dim + 1:]
        return {self.fields["into"]: Lazy(first.dtype, shape,
                                          lambda: np.concatenate([s.compute() for s in sources], axis=dim))}


class Drop(Op):
    name, required, optional = "drop", {"key": NAME}, {"shape": SHAPE, "dtype": DTYPE}

    def inverse(self) -> Op:
        if "shape" not in self.fields or "dtype" not in self.fields:
            raise RuleError(f"cannot invert {self.describe()}: it needs the dropped tensor's shape and dtype")
        return Add({"key": self.fields["key"], "shape": self.fields["shape"], "dtype": self.fields["dtype"],
                    "value": 0})

    def make(self, sources: list[Lazy], conversion: Conversion, where: str) -> dict[str, Lazy]:
        conversion.dropped.append((self.fields["key"], sources[0]))
        return {}


class Add(Op):
    """A tensor the producer did not have, filled with one value (a new norm's bias, a new buffer)."""
    name, required, optional = "add", {"key": NAME, "shape": SHAPE, "dtype": DTYPE}, {"value": NUMBER}

    def check(self, where: str) -> None:
        count = 1
        for size in self.fields["shape"]:
            count *= size
        if count * ITEMSIZE[self.fields["dtype"]] > MAX_ADDED_BYTES:
            raise self.fail(where, "shape", f"a tensor of at most {MAX_ADDED_BYTES >> 20} MiB (a new tensor is made "
                            "in memory)")

    def inverse(self) -> Op:
        return Drop({k: self.fields[k] for k in ("key", "shape", "dtype")})

    def apply(self, tensors: dict[str, Lazy], conversion: Conversion, where: str) -> dict[str, Lazy]:
        key = self.fields["key"]
        if key in tensors:
            raise RuleError(f"{where}: {key} already exists")
        shape, dtype, value = tuple(self.fields["shape"]), self.fields["dtype"], self.fields.get("value", 0)
        return tensors | {key: Lazy(dtype, shape, lambda: encode(np.full(shape, value), dtype))}


OPS: dict[str, type[Op]] = {op.name: op for op in (
    Rename, RenamePattern, Transpose, SwapHalves, PermuteChunks, Interleave, Deinterleave, Reshape, Cast,
    AddConstant, PackSkew, UnpackSkew, Split, Fuse, Drop, Add)}


def parse_op(data: object, where: str) -> Op:
    if not isinstance(data, dict) or not isinstance(data.get("op"), str) or data["op"] not in OPS:
        raise RuleError(f"{where}: a step needs an op among {', '.join(OPS)}")
    return OPS[data["op"]].parse(data, where)
