"""Diff two checkpoints, and infer the rule set that turns one into the other from the tensors' contents.

Inputs are ``.safetensors`` files, ``save_pretrained`` folders (every ``*.safetensors`` inside), or sharded checkpoints
(a ``*.index.json`` whose ``weight_map`` names the shards). Tensors are read and digested one at a time.

Inference matches by content, not by name: for every tensor of A it digests the raw bytes and the canonical
transforms (transposed, halves swapped); a tensor of B whose digest equals one of those is that tensor of A, renamed
and transformed. Where several tensors of A have the same contents (zeros, ones), the most similar name wins.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from compat.checkpoint import CheckpointError, SafetensorsFile, TensorInfo
from compat.envside.rules import RuleSet, transform

CHUNK = 1 << 24


@dataclass
class Checkpoint:
    path: Path
    entries: dict[str, tuple[SafetensorsFile, TensorInfo]]

    def read(self, name: str) -> bytes:
        file, _ = self.entries[name]
        return file.read_bytes(name)

    def digest(self, name: str) -> str:
        """Content digest of one tensor, read in bounded pieces."""
        file, info = self.entries[name]
        hasher = _hasher(info.dtype, info.shape)
        for piece in file.chunks(name):
            hasher.update(piece)
        return hasher.hexdigest()

    def layout(self) -> list[tuple[str, str, tuple[int, ...]]]:
        return [(name, info.dtype, info.shape) for name, (_, info) in self.entries.items()]


def open_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if path.is_dir():
        indexes = sorted(path.glob("*.safetensors.index.json"))
        files = _from_index(indexes[0]) if indexes else sorted(path.glob("*.safetensors"))
    elif path.name.endswith(".index.json"):
        files = _from_index(path)
    else:
        files = [path]
    if not files:
        raise CheckpointError(f"{path}: no .safetensors files found")
    entries: dict[str, tuple[SafetensorsFile, TensorInfo]] = {}
    for file in map(SafetensorsFile, files):
        for info in file:
            if info.name in entries:
                raise CheckpointError(f"{path}: tensor {info.name} appears in two files")
            entries[info.name] = (file, info)
    return Checkpoint(path, entries)


def _from_index(index: Path) -> list[Path]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        return sorted({index.parent / name for name in weight_map.values()})
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{index}: not a sharded-checkpoint index ({exc})") from None


def _hasher(dtype: str, shape: tuple[int, ...]):
    hasher = hashlib.blake2b(digest_size=16)
    hasher.update(f"{dtype}|{list(shape)}|".encode())
    return hasher


def _digest(data: bytes, dtype: str, shape: tuple[int, ...]) -> str:
    hasher = _hasher(dtype, shape)
    hasher.update(data)
    return hasher.hexdigest()


def _same_bytes(a: Checkpoint, b: Checkpoint, name: str) -> bool:
    """Compare one tensor of A and B piece by piece into two reused buffers: close to the speed of reading, and
    never more than two pieces in memory."""
    (file_a, info_a), (file_b, info_b) = a.entries[name], b.entries[name]
    buffer_a, buffer_b = bytearray(CHUNK), bytearray(CHUNK)
    view_a, view_b = memoryview(buffer_a), memoryview(buffer_b)
    with open(file_a.path, "rb") as handle_a, open(file_b.path, "rb") as handle_b:
        handle_a.seek(info_a.begin)
        handle_b.seek(info_b.begin)
        left = info_a.nbytes
        while left:
            size = min(CHUNK, left)
            if handle_a.readinto(view_a[:size]) != size or handle_b.readinto(view_b[:size]) != size:
                raise CheckpointError(f"{name}: file truncated while reading")
            if (buffer_a != buffer_b) if size == CHUNK else (buffer_a[:size] != buffer_b[:size]):
                return False
            left -= size
    return True


def diff(a: Checkpoint, b: Checkpoint) -> dict:
    """Keys only in A or B, shape and dtype changes, and which common tensors are bitwise equal."""
    common = sorted(set(a.entries) & set(b.entries))
    result = {"only_a": sorted(set(a.entries) - set(b.entries)), "only_b": sorted(set(b.entries) - set(a.entries)),
              "shape": [], "dtype": [], "equal": [], "different": []}
    for name in common:
        info_a, info_b = a.entries[name][1], b.entries[name][1]
        if info_a.shape != info_b.shape:
            result["shape"].append({"key": name, "a": list(info_a.shape), "b": list(info_b.shape)})
        elif info_a.dtype != info_b.dtype:
            result["dtype"].append({"key": name, "a": info_a.dtype, "b": info_b.dtype})
        else:
            result["equal" if _same_bytes(a, b, name) else "different"].append(name)
    return result


def infer(a: Checkpoint, b: Checkpoint) -> tuple[RuleSet, list[str]]:
    """A rule set taking A to B, and the names in B it could not explain."""
    candidates: dict[str, list[tuple[str, str | None]]] = {}
    for name, dtype, shape in a.layout():
        data = a.read(name)
        variants = [(None, data, shape)]
        if len(shape) == 2:
            variants.append(("transpose", transform(data, dtype, shape, "transpose"), tuple(reversed(shape))))
        if shape and shape[0] % 2 == 0 and shape[0] > 0:
            variants.append(("swap_halves", transform(data, dtype, shape, "swap_halves"), shape))
        for op, variant, variant_shape in variants:
            candidates.setdefault(_digest(variant, dtype, variant_shape), []).append((name, op))
    rules, unexplained, used = RuleSet(), [], set()
    for name, dtype, shape in b.layout():
        found = [c for c in candidates.get(b.digest(name), []) if c[0] not in used]
        if not found:
            unexplained.append(name)
            continue
        # prefer the same name, then no transform, then the most similar name
        source, op = max(found, key=lambda c: (c[0] == name, c[1] is None,
                                               difflib.SequenceMatcher(None, c[0], name).ratio()))
        used.add(source)
        if source != name:
            rules.rename[source] = name
        if op:
            rules.transforms.append({"key": name, "op": op})
    return rules, unexplained


def convert(source: Checkpoint, rules: RuleSet, out: Path, metadata: dict[str, str] | None = None) -> None:
    from compat.checkpoint import write

    layout, data = rules.apply(source.layout(), source.read)
    write(out, layout, data, metadata)
