"""Open checkpoints, diff them key by key and byte by byte, and convert one with a rule set.

Inputs are ``.safetensors`` files, ``save_pretrained`` folders (every ``*.safetensors`` inside), sharded checkpoints
(a ``*.index.json`` whose ``weight_map`` names the shards) and compat artifacts (their ``model.safetensors``). Tensors
are read one at a time; inference of a rule set lives in ``compat.host.inference``.
"""

from __future__ import annotations

import atexit
import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from compat.host.matrix import Tolerance
from compat.shared.checkpoint import MAX_DIMS, PICKLE_SUFFIXES, CheckpointError, SafetensorsFile, TensorInfo, write
from compat.shared.dtypes import ITEMSIZE
from compat.shared.rules import Conversion, RuleSet
from compat.shared.untrusted import UntrustedInputError, parse_json, read_text, text_ok

CHUNK = 1 << 20  # pieces that stay in the CPU cache between read and compare: faster than `cat` (benchmarks/)


@dataclass
class Checkpoint:
    path: Path
    entries: dict[str, tuple[SafetensorsFile, TensorInfo]]

    def read(self, name: str) -> bytes:
        file, _ = self.entries[name]
        return file.read_bytes(name)

    def layout(self) -> list[tuple[str, str, tuple[int, ...]]]:
        return [(name, info.dtype, info.shape) for name, (_, info) in self.entries.items()]


def open_checkpoint(path: str | Path, allow_pickle: bool = False) -> Checkpoint:
    """A checkpoint from a file, a folder, an index or a compat artifact. Pickle-based files only with
    ``allow_pickle``, and then through ``torch.load(weights_only=True)`` into a temporary ``.safetensors``."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    if path.is_dir() and (path / "manifest.json").exists():
        files = [_artifact_model(path)]
    elif path.is_dir():
        indexes = sorted(path.glob("*.safetensors.index.json"))
        files = _from_index(indexes[0]) if indexes else sorted(path.glob("*.safetensors"))
    elif path.suffix in PICKLE_SUFFIXES and allow_pickle:
        files = [pickle_to_safetensors(path)]
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


def _artifact_model(folder: Path) -> Path:
    """The weights of a compat artifact, after checking its manifest agrees with them (a manifest is input too)."""
    where = folder / "manifest.json"
    try:
        manifest = parse_json(read_text(where, "manifest"), str(where), "manifest")
    except UntrustedInputError as exc:
        raise CheckpointError(f"not a compat manifest: {exc}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("status"), str):
        raise CheckpointError(f"{where}: a manifest is an object with a status")
    if manifest["status"] != "ok":
        raise CheckpointError(f"{folder}: the release could not produce this artifact ({manifest['status']}): "
                              f"{str(manifest.get('reason', ''))[:300]}")
    keys = manifest.get("keys")
    if not isinstance(keys, dict) or not all(
            isinstance(entry, dict) and isinstance(entry.get("shape"), list) and isinstance(entry.get("dtype"), str)
            and all(type(d) is int and d >= 0 for d in entry["shape"]) for entry in keys.values()):
        raise CheckpointError(f"{where}: keys must map each name to a shape (list of integers) and a dtype")
    model = folder / "model.safetensors"
    stored = {info.name: list(info.shape) for info in SafetensorsFile(model)}
    declared = {name: entry["shape"] for name, entry in keys.items()}
    if stored != declared:
        wrong = sorted(set(stored) ^ set(declared) | {n for n in set(stored) & set(declared)
                                                       if stored[n] != declared[n]})
        raise CheckpointError(f"{where}: the manifest disagrees with model.safetensors on {', '.join(wrong[:5])}")
    return model


def pickle_to_safetensors(path: Path) -> Path:
    """Load a pickle checkpoint the safe way (tensors and plain containers only) and store it as safetensors."""
    try:
        import torch
    except ImportError:
        raise CheckpointError(f"{path}: reading a pickle checkpoint needs torch installed") from None
    from compat.shared.dtypes import torch_dtype_table

    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # the legacy (non-zip) format cannot be memory-mapped
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - anything a hostile pickle raises is a refusal, named
        raise CheckpointError(f"{path}: not loadable with torch.load(weights_only=True): "
                              f"{type(exc).__name__}: {str(exc)[:300]}") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{path}: not a state dict (a mapping of names to tensors)")
    table = torch_dtype_table(torch)
    for name, tensor in state.items():
        problem = _unstorable(name, tensor, table)
        if problem:
            raise CheckpointError(f"{path}: tensor {name!r}: {problem}")
    scratch = Path(tempfile.mkdtemp(prefix="compat-pickle-"))
    atexit.register(shutil.rmtree, scratch, True)
    out = scratch / (path.stem + ".safetensors")
    layout = [(k, table[v.dtype], tuple(v.shape)) for k, v in state.items()]
    write(out, layout, (v.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() for v in state.values()),
          {"compat.source": str(path)})
    return out


def _unstorable(name: str, tensor, dtypes: dict) -> str | None:
    """Why a loaded tensor cannot be a safetensors tensor (a pickle can hold sparse, meta-device or nested tensors,
    and dtypes safetensors has no name for), or None."""
    import torch

    if not text_ok(name):
        return "a name with a NUL byte or an unpaired surrogate"
    if tensor.is_nested:
        return "a nested tensor"
    if tensor.layout != torch.strided:
        return f"a {str(tensor.layout).removeprefix('torch.')} tensor (only dense tensors are read)"
    if tensor.device.type != "cpu":
        return f"a tensor on the {tensor.device.type} device (its values are not in the file)"
    if tensor.dtype not in dtypes:
        return f"dtype {str(tensor.dtype).removeprefix('torch.')}, which safetensors cannot hold"
    if tensor.dim() > MAX_DIMS:
        return f"{tensor.dim()} dimensions; compat reads tensors of at most {MAX_DIMS}"
    return None


def _from_index(index: Path) -> list[Path]:
    """The shard files an index names: file names in the index's own folder, nothing else."""
    try:
        data = parse_json(read_text(index, "index"), str(index), "index")
    except UntrustedInputError as exc:
        raise CheckpointError(f"not a sharded-checkpoint index: {exc}") from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(f"{index}: not a sharded-checkpoint index (weight_map must map tensor names to file "
                              "names)")
    for name in set(weight_map.values()):
        if not name or Path(name).name != name or name in (".", ".."):
            raise CheckpointError(f"{index}: weight_map names {name!r}: a shard is a file name in the index's folder")
    return sorted({index.parent / name for name in weight_map.values()})


def content_digest(data: bytes, dtype: str) -> str:
    """Digest of dtype and bytes, not shape: a reshaped tensor has the digest of the original (inference relies on
    it)."""
    hasher = hashlib.blake2b(digest_size=16)
    hasher.update(f"{dtype}|".encode())
    hasher.update(data)
    return hasher.hexdigest()


def _pieces(a: Checkpoint, b: Checkpoint, name: str) -> Iterator[tuple[bytearray, bytearray]]:
    """One tensor of A and of B, piece by piece, read into two reused buffers: never more than two pieces in memory.
    Pieces are bytearrays because comparing those is a memcmp (comparing memoryviews is 80 times slower)."""
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
            yield (buffer_a, buffer_b) if size == CHUNK else (buffer_a[:size], buffer_b[:size])
            left -= size


def _same_bytes(a: Checkpoint, b: Checkpoint, name: str) -> bool:
    return all(piece_a == piece_b for piece_a, piece_b in _pieces(a, b, name))


def max_difference(a: Checkpoint, b: Checkpoint, name: str) -> tuple[float, float]:
    """Largest absolute difference of one tensor between A and B, and B's largest absolute value (for rtol)."""
    import numpy as np

    from compat.shared.rules import UNSIGNED, decode

    dtype = a.entries[name][1].dtype
    width = UNSIGNED[ITEMSIZE[dtype]]
    worst, scale = 0.0, 0.0
    for piece_a, piece_b in _pieces(a, b, name):
        values_a = decode(np.frombuffer(piece_a, dtype=width), dtype).astype(np.float64)
        values_b = decode(np.frombuffer(piece_b, dtype=width), dtype).astype(np.float64)
        if values_a.size:
            worst = max(worst, float(np.max(np.abs(values_a - values_b))))
            scale = max(scale, float(np.max(np.abs(values_b))))
    return worst, scale


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


def convert(source: Checkpoint, rules: RuleSet, out: Path, metadata: dict[str, str] | None = None) -> Conversion:
    """Write ``source`` converted by ``rules`` to ``out``, one tensor at a time; the conversion's notes say what was
    lost."""
    conversion = rules.apply(source.layout(), source.read)
    write(out, conversion.layout, conversion.tensors(), metadata)
    return conversion


@dataclass
class Verification:
    """A converted file against a reference: what differs beyond tolerance, what differs within it, how many equal."""
    problems: dict[str, list[str]]
    within: list[tuple[str, float]]
    equal: int


def verify(result: Checkpoint, reference: Checkpoint, tolerance: Tolerance) -> Verification:
    """Keys, shapes and dtypes must match; values bit for bit, or within ``tolerance`` (the matrix's own rule:
    ``max_abs <= atol + rtol * max|reference|``) where one is given."""
    found = diff(result, reference)
    problems = {k: list(found[k]) for k in ("only_a", "only_b", "shape", "dtype") if found[k]}
    within, beyond = [], []
    for name in found["different"]:
        worst, scale = max_difference(result, reference, name)
        stats = {"shape_match": True, "max_abs": worst, "ref_max_abs": scale}
        allowed = tolerance.atol + tolerance.rtol * scale
        if tolerance.atol + tolerance.rtol > 0 and tolerance.allows(stats):
            within.append((name, worst))
        else:
            beyond.append(f"{name}: max abs {worst:.3g} (allowed {allowed:.3g})")
    if beyond:
        problems["different"] = beyond
    return Verification(problems, within, len(found["equal"]))
