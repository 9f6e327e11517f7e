"""Read and write ``.safetensors`` files one tensor at a time, trusting nothing in them.

Checkpoint files come from strangers. Everything in the header is checked before anything is read: the header length
is in range, the header is a JSON object without duplicate keys, every dtype is known, every shape is a list of
non-negative integers, every tensor's byte range lies inside the data and matches its shape, and no two ranges overlap.
Any violation is one ``CheckpointError`` naming the file and the problem; no tensor is allocated from an unchecked size.
Tensors are read lazily (``read_bytes``), so diffing or converting never holds two whole checkpoints in memory.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from compat.shared.dtypes import ITEMSIZE, MAX_DIMS
from compat.shared.errors import CompatError
from compat.shared.untrusted import UntrustedInputError, parse_json

MAX_HEADER = 100 * 1024 * 1024
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


class CheckpointError(CompatError):
    pass


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int  # offset in the file
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


class SafetensorsFile:
    """A validated view of one ``.safetensors`` file; tensors are read on demand."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.suffix in PICKLE_SUFFIXES:
            raise CheckpointError(f"{self.path}: a pickle-based checkpoint; compat reads .safetensors only; "
                                  "pass --allow-pickle to load it with torch.load(weights_only=True)")
        self.metadata, self.tensors = _read_header(self.path)

    def __iter__(self) -> Iterator[TensorInfo]:
        return iter(self.tensors.values())

    def chunks(self, name: str, size: int = 1 << 26) -> Iterator[bytes]:
        """A tensor's bytes in pieces of at most ``size``: digesting never holds a whole tensor."""
        info = self.tensors[name]
        with open(self.path, "rb") as handle:
            handle.seek(info.begin)
            left = info.nbytes
            while left:
                piece = handle.read(min(size, left))
                if not piece:
                    raise CheckpointError(f"{self.path}: {name}: file truncated while reading")
                left -= len(piece)
                yield piece

    def read_bytes(self, name: str) -> bytes:
        info = self.tensors[name]
        with open(self.path, "rb") as handle:
            handle.seek(info.begin)
            data = handle.read(info.nbytes)
        if len(data) != info.nbytes:
            raise CheckpointError(f"{self.path}: {name}: file truncated while reading")
        return data


def _read_header(path: Path) -> tuple[dict[str, str], dict[str, TensorInfo]]:
    def fail(problem: str) -> CheckpointError:
        return CheckpointError(f"{path}: {problem}")

    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise fail("not a safetensors file: shorter than the 8-byte header length")
            (length,) = struct.unpack("<Q", head)
            if length == 0 or length > MAX_HEADER or length > size - 8:
                raise fail(f"header length {length} out of range (file has {size} bytes, limit {MAX_HEADER})")
            raw = handle.read(length)
    except OSError as exc:
        raise fail(f"cannot read: {exc.strerror or exc}") from None
    try:
        header = parse_json(raw.decode("utf-8"), str(path), "header", object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError as exc:
        raise fail(f"header is not UTF-8 (byte {exc.start})") from None
    except UntrustedInputError as exc:
        raise CheckpointError(str(exc)) from None
    if not isinstance(header, dict):
        raise fail("header is not a JSON object")
    metadata = header.pop("__metadata__", {}) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise fail("__metadata__ must map strings to strings")
    data_start, data_size = 8 + length, size - 8 - length
    tensors, ranges = {}, []
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise fail(f"{name}: expected dtype, shape and data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(dtype, str) or dtype not in ITEMSIZE:
            raise fail(f"{name}: unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(type(d) is int and 0 <= d < 2**63 for d in shape):
            raise fail(f"{name}: shape must be a list of non-negative integers, got {shape!r}")
        if len(shape) > MAX_DIMS:
            raise fail(f"{name}: {len(shape)} dimensions; compat reads tensors of at most {MAX_DIMS}")
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= data_size):
            raise fail(f"{name}: data_offsets {offsets!r} outside the data ({data_size} bytes)")
        expected = math.prod(shape) * ITEMSIZE[dtype]
        if offsets[1] - offsets[0] != expected:
            raise fail(f"{name}: {offsets[1] - offsets[0]} bytes for shape {shape} of {dtype} ({expected} expected)")
        tensors[name] = TensorInfo(name, dtype, tuple(shape), data_start + offsets[0], data_start + offsets[1])
        ranges.append((offsets[0], offsets[1], name))
    ranges.sort()
    for (_, end, first), (begin, _, second) in zip(ranges, ranges[1:]):
        if begin < end:
            raise fail(f"tensors {first} and {second} overlap in the data")
    return metadata, tensors


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    result = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def write(path: str | Path, tensors: list[tuple[str, str, tuple[int, ...]]], data: Iterator[bytes],
          metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file from (name, dtype, shape) and the tensors' bytes in the same order, one at a time."""
    header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, dtype, shape in tensors:
        nbytes = math.prod(shape) * ITEMSIZE[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        for (name, dtype, shape), chunk in zip(tensors, data):
            if len(chunk) != math.prod(shape) * ITEMSIZE[dtype]:
                raise CheckpointError(f"{path}: {name}: {len(chunk)} bytes do not fit shape {shape} of {dtype}")
            handle.write(chunk)
