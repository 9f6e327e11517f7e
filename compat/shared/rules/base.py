"""What every rule op shares: the lazy tensor it works on, the conversion it adds to, and how its fields are checked.

An op is a small class (as in transformers' conversion ops) that owns its fields (``required`` / ``optional``, each
with the check its values must pass), any check across fields (``check``), its inverse and its application. A
multi-tensor op names its ``sources`` and ``make``s the tensors that take the first source's place; the base class
does the bookkeeping every such op needs (a missing source skips the step with a note; a name clash is an error).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator

import numpy as np

from compat.shared.dtypes import ITEMSIZE, MAX_DIMS
from compat.shared.errors import CompatError
from compat.shared.rules.codec import NUMERIC, decode

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
        for array in self.arrays():
            yield array.tobytes()

    def arrays(self) -> Iterator[np.ndarray]:
        """The tensors as contiguous arrays of the dtype's unsigned width, which may share memory with the inputs
        (a renamed tensor is its source): for readers that copy anyway, without a copy through ``bytes`` first."""
        for name, lazy in self.dropped:  # dropping zeros loses nothing; dropping anything else is lossy
            values = lazy.compute()
            if np.any(values):
                norm = f" (norm {float(np.linalg.norm(decode(values, lazy.dtype).astype(np.float64))):.4g})" \
                    if lazy.dtype in NUMERIC else ""
                self.notes.append(f"lossy: dropped {name}{norm}, which is not all zeros")
        for name, _, _ in self.layout:
            yield np.ascontiguousarray(self.planned[name].compute())


# --- field checks: each returns what a value must be, or None when it is fine -----------------------------------
Check = Callable[[Any], "str | None"]


def name_ok(text: str) -> bool:
    """No NUL byte and no unpaired surrogate: such a name breaks files and terminals far from here."""
    return not re.search("[\x00\ud800-\udfff]", text)


def integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def NAME(value: Any) -> str | None:
    return None if isinstance(value, str) and name_ok(value) else "a string without NUL bytes or unpaired surrogates"


def NAMES(value: Any) -> str | None:
    ok = isinstance(value, list) and len(value) >= 2 and all(isinstance(v, str) and name_ok(v) for v in value)
    return None if ok else "a list of at least two names"


def MAPPING(value: Any) -> str | None:
    ok = isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) and name_ok(k) and name_ok(v)
                                         for k, v in value.items())
    return None if ok else "a mapping of names to names"


def _integers(minimum: int) -> Check:
    def check(value: Any) -> str | None:
        ok = isinstance(value, list) and len(value) <= MAX_DIMS and all(
            integer(v) and minimum <= v < 2**48 for v in value)
        return None if ok else f"a list of at most {MAX_DIMS} integers >= {minimum}"
    return check


SHAPE, SIZES = _integers(0), _integers(1)


def ORDER(value: Any) -> str | None:
    problem = SHAPE(value)
    if problem or sorted(value) != list(range(len(value))) or len(value) < 2:
        return problem or "a permutation of 0..n-1 (n >= 2)"
    return None


def CHUNKS(value: Any) -> str | None:
    return None if integer(value) and 2 <= value <= 2**20 else "an integer >= 2"


def DIM(value: Any) -> str | None:
    return None if integer(value) and 0 <= value < MAX_DIMS else f"an integer from 0 to {MAX_DIMS - 1}"


def DTYPE(value: Any) -> str | None:
    return None if isinstance(value, str) and value in ITEMSIZE else f"a safetensors dtype ({', '.join(ITEMSIZE)})"


def NUMBER(value: Any) -> str | None:
    return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "a number"


# --- the op base class ------------------------------------------------------------------------------------------
class Op:
    name: ClassVar[str]
    required: ClassVar[dict[str, Check]] = {}
    optional: ClassVar[dict[str, Check]] = {}

    def __init__(self, fields: dict):
        self.fields = dict(fields)

    @classmethod
    def parse(cls, data: dict, where: str) -> "Op":
        """The op for ``data`` (its ``op`` field already chosen this class), or ``RuleError`` saying which field."""
        given = set(data) - {"op"}
        missing, extra = set(cls.required) - given, given - set(cls.required) - set(cls.optional)
        if missing or extra:
            raise RuleError(f"{where}: {cls.name} needs {sorted(cls.required)}"
                            + (f", may have {sorted(cls.optional)}" if cls.optional else "")
                            + f"; missing {sorted(missing)}, unknown {sorted(extra)}")
        op = cls({k: v for k, v in data.items() if k != "op"})
        for name, check in {**cls.required, **cls.optional}.items():
            if name in op.fields:
                problem = check(op.fields[name])
                if problem:
                    raise op.fail(where, name, problem)
        op.check(where)
        return op

    def fail(self, where: str, name: str, expected: str) -> RuleError:
        return RuleError(f"{where}: {self.name}: {name} must be {expected}, got {self.fields[name]!r}")

    def check(self, where: str) -> None:
        """Checks across fields, after each field passed its own."""

    def to_data(self) -> dict:
        return {"op": self.name, **self.fields}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Op) and self.to_data() == other.to_data()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.fields!r})"

    def describe(self) -> str:
        return f"{self.name} {self.fields.get('key') or self.fields.get('into')}"

    def inverse(self) -> "Op":
        raise NotImplementedError

    # applying: a multi-tensor op names its sources and makes what replaces them ---------------------------------
    def sources(self) -> list[str]:
        return [self.fields["key"]]

    def make(self, sources: list[Lazy], conversion: Conversion, where: str) -> dict[str, Lazy]:
        raise NotImplementedError

    def apply(self, tensors: dict[str, Lazy], conversion: Conversion, where: str) -> dict[str, Lazy]:
        keys = self.sources()
        absent = [key for key in keys if key not in tensors]
        if absent:
            conversion.notes.append(f"{where}: no tensor named {', '.join(absent)}; step skipped")
            return tensors
        made = self.make([tensors[key] for key in keys], conversion, where)
        kept = {name: lazy for name, lazy in tensors.items() if name not in keys}
        clash = set(made) & set(kept)
        if clash:
            raise RuleError(f"{where}: {', '.join(sorted(clash))} already exists")
        ordered: dict[str, Lazy] = {}  # the new tensor(s) take the place of the first source
        for name, lazy in tensors.items():
            if name == keys[0]:
                ordered.update(made)
            elif name in kept:
                ordered[name] = lazy
        return ordered


class TensorOp(Op):
    """An op on one tensor that keeps its name: ``transform`` gives the new lazy tensor."""

    def make(self, sources: list[Lazy], conversion: Conversion, where: str) -> dict[str, Lazy]:
        return {self.fields["key"]: self.transform(sources[0], conversion, where)}

    def transform(self, source: Lazy, conversion: Conversion, where: str) -> Lazy:
        raise NotImplementedError

    def dim_of(self, source: Lazy, where: str) -> int:
        dim = self.fields.get("dim", 0)
        if dim >= len(source.shape):
            raise RuleError(f"{where}: shape {list(source.shape)} has no dim {dim}")
        return dim
