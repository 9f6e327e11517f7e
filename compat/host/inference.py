"""Infer the rule set that turns checkpoint A into checkpoint B from the tensors' contents, not their names.

Matching is by content digests (dtype and raw bytes, not shape), cheapest evidence first, each pass looking only at
what the previous ones left: see ``_Inference``. Where several tensors of A hold the same contents (zeros, ones), the
most similar name wins. Tensors are read one at a time; nothing holds a whole checkpoint.
"""

from __future__ import annotations

import difflib

import numpy as np

from compat.host.keydiff import Checkpoint, content_digest, diff
from compat.shared.dtypes import ITEMSIZE
from compat.shared.rules import NUMERIC, UNSIGNED, RuleSet, decode, encode, transform


def infer(a: Checkpoint, b: Checkpoint) -> tuple[RuleSet, list[str]]:
    """A rule set taking A to B, and the names in B it could not explain."""
    return _Inference(a, b).run()


class _Inference:
    """Explains B's tensors by A's, cheapest evidence first.

    Pass 1 digests every tensor of A as stored, transposed and with halves swapped, and looks B's digests up (a
    rename, a transform, a reshape when only the shape differs). Later passes look only at what is left: chunks
    permuted or interleaved, several tensors of A concatenated into one of B (fuse) or one of A cut into several of
    B (split), a cast, a constant added, tensors of A that B does not have (drop) and tensors of B that hold one
    value (add). Digests cover dtype and bytes, not shape, so a reshape is found like a rename.
    """

    def __init__(self, a: Checkpoint, b: Checkpoint):
        self.a, self.b = a, b
        self.layout_a = {name: (dtype, shape) for name, dtype, shape in a.layout()}
        self.layout_b = {name: (dtype, shape) for name, dtype, shape in b.layout()}
        self.used: set[str] = set()
        self.renames: dict[str, str] = {}
        self.steps: dict[str, list[dict]] = {"drop": [], "split": [], "fuse": [], "transform": [], "add": []}
        self.digest_a: dict[str, str] = {}
        self.digest_b: dict[str, str] = {}

    def run(self) -> tuple[RuleSet, list[str]]:
        left = self.match_whole()
        for explain in (self.match_chunks, self.match_fused, self.match_split, self.match_values):
            if left:
                left = explain(left)
        for name in sorted(set(self.layout_a) - self.used):
            dtype, shape = self.layout_a[name]
            self.steps["drop"].append({"op": "drop", "key": name, "shape": list(shape), "dtype": dtype})
        left = [name for name in left if not self.constant(name)]
        steps = self.steps["drop"] + ([{"op": "rename", "map": self.renames}] if self.renames else [])
        steps += self.steps["split"] + self.steps["fuse"] + self.steps["transform"] + self.steps["add"]
        return RuleSet(steps), left

    # pass 1: one tensor of A, maybe transposed or halves swapped, maybe reshaped, is one tensor of B
    def match_whole(self) -> list[str]:
        candidates: dict[str, list[tuple[str, str | None]]] = {}
        for name, (dtype, shape) in self.layout_a.items():
            data = self.a.read(name)
            self.digest_a[name] = content_digest(data, dtype)
            candidates.setdefault(self.digest_a[name], []).append((name, None))
            for op in _single_ops(shape):
                candidates.setdefault(content_digest(transform(data, dtype, shape, op), dtype), []).append((name, op))
        left = []
        for name, (dtype, shape) in self.layout_b.items():
            self.digest_b[name] = content_digest(self.b.read(name), dtype)
            found = [c for c in candidates.get(self.digest_b[name], []) if c[0] not in self.used]
            if not found:
                left.append(name)
                continue
            # prefer the same name, then no transform, then the most similar name
            source, op = max(found, key=lambda c: (c[0] == name, c[1] is None, _similarity(c[0], name)))
            after = self.layout_a[source][1]
            transforms = [{"op": op, "key": name}] if op else []
            if op == "transpose":
                after = after[::-1]
            if after != shape:
                transforms.append({"op": "reshape", "key": name, "shape": list(shape), "from": list(after)})
            self.take(source, name, transforms)
        return left

    # pass 2: B's chunks along dim 0 are the chunks of an A tensor of the same shape, reordered or interleaved
    def match_chunks(self, left: list[str]) -> list[str]:
        blocks: dict[tuple[int, str], list[tuple[str, int]]] = {}
        for name in self.unused_a():
            dtype, shape = self.layout_a[name]
            data = self.a.read(name) if _chunk_counts(shape) else b""
            for k in _chunk_counts(shape):
                for j, block in enumerate(_blocks(data, k)):
                    blocks.setdefault((k, content_digest(block, dtype)), []).append((name, j))
        return [name for name in left if not self.chunks_of(name, blocks)]

    def chunks_of(self, name: str, blocks: dict[tuple[int, str], list[tuple[str, int]]]) -> bool:
        dtype, shape = self.layout_b[name]
        data = self.b.read(name) if _chunk_counts(shape) else b""
        for k in _chunk_counts(shape):
            for strided in (False, True):
                parts = _strided(data, shape, k) if strided else _blocks(data, k)
                hits = [dict(blocks.get((k, content_digest(part, dtype)), [])) for part in parts]
                sources = [s for s in set(hits[0]) if s not in self.used and self.layout_a[s] == (dtype, shape)
                           and all(s in found for found in hits)]
                if not sources:
                    continue
                source = max(sources, key=lambda s: _similarity(s, name))
                order = [found[source] for found in hits]
                if sorted(order) != list(range(k)):
                    continue
                transforms = [] if order == list(range(k)) else [{"op": "permute_chunks", "key": name,
                                                                  "order": order}]
                if strided:
                    transforms.append({"op": "interleave", "key": name, "chunks": k})
                self.take(source, name, transforms)
                return True
        return False

    # pass 3: one tensor of B is several tensors of A one after another (or interleaved): a fuse
    def match_fused(self, left: list[str]) -> list[str]:
        remaining = []
        for name in left:
            dtype, shape = self.layout_b[name]
            pool = [s for s in self.unused_a() if shape and self.layout_a[s][0] == dtype and len(self.layout_a[s][1]) ==
                    len(shape) and self.layout_a[s][1][1:] == shape[1:] and 0 < self.layout_a[s][1][0] < shape[0]]
            parts = self.cover(self.b.read(name) if pool else b"", dtype, shape, pool, self.layout_a, self.digest_a,
                               name)
            if parts:
                self.used.update(parts)
                self.steps["fuse"].append({"op": "fuse", "keys": parts, "into": name,
                                           "sizes": [self.layout_a[p][1][0] for p in parts]})
                continue
            interleaved = self.interleaved_sources(name, pool)
            if interleaved:
                self.used.update(interleaved)
                self.steps["fuse"].append({"op": "fuse", "keys": interleaved, "into": name})
                self.steps["transform"].append({"op": "interleave", "key": name, "chunks": len(interleaved)})
                continue
            remaining.append(name)
        return remaining

    # pass 4: one tensor of A is several tensors of B: a split
    def match_split(self, left: list[str]) -> list[str]:
        for name in self.unused_a():
            dtype, shape = self.layout_a[name]
            pool = [t for t in left if shape and self.layout_b[t][0] == dtype and len(self.layout_b[t][1]) == len(shape)
                    and self.layout_b[t][1][1:] == shape[1:] and 0 < self.layout_b[t][1][0] < shape[0]]
            parts = self.cover(self.a.read(name) if pool else b"", dtype, shape, pool, self.layout_b, self.digest_b,
                               name)
            if parts:
                self.used.add(name)
                self.steps["split"].append({"op": "split", "key": name, "into": parts,
                                            "sizes": [self.layout_b[p][1][0] for p in parts]})
                left = [t for t in left if t not in parts]
        return left

    # pass 5: same shape, other values: a cast, or a constant added
    def match_values(self, left: list[str]) -> list[str]:
        remaining = []
        for name in left:
            dtype, shape = self.layout_b[name]
            pool = sorted((s for s in self.unused_a() if self.layout_a[s][1] == shape and dtype in NUMERIC
                           and self.layout_a[s][0] in NUMERIC), key=lambda s: -_similarity(s, name))
            target = _values(self.b.read(name), dtype, shape) if pool else None
            for source in pool:
                source_dtype = self.layout_a[source][0]
                values = _values(self.a.read(source), source_dtype, shape)
                if source_dtype != dtype:
                    if content_digest(encode(values, dtype).tobytes(), dtype) == self.digest_b[name]:
                        self.take(source, name, [{"op": "cast", "key": name, "dtype": dtype, "from": source_dtype}])
                        break
                    continue
                step = _constant_step(values, target, dtype, name)
                if step and content_digest(encode(values + np.asarray(step["value"]).astype(values.dtype), dtype)
                                    .tobytes(), dtype) == self.digest_b[name]:
                    self.take(source, name, [step])
                    break
            else:
                remaining.append(name)
        return remaining

    def constant(self, name: str) -> bool:
        """A tensor of B holding a single value is one B adds (a new norm weight of ones, a zero bias)."""
        dtype, shape = self.layout_b[name]
        if dtype not in NUMERIC or not all(shape):
            return False
        values = _values(self.b.read(name), dtype, shape)
        first = values.flat[0]
        if not np.all(values == first) or (values.dtype.kind == "f" and not np.isfinite(first)):
            return False
        self.steps["add"].append({"op": "add", "key": name, "shape": list(shape), "dtype": dtype,
                                  "value": first.item()})
        return True

    @staticmethod
    def cover(data: bytes, dtype: str, shape: tuple[int, ...], pool: list[str], layout: dict, digests: dict[str, str],
              name: str) -> list[str] | None:
        """Names from ``pool`` whose contents, one after another along dim 0, are ``data``; or None."""
        if not pool:
            return None

        def rows(part: str) -> int:
            return layout[part][1][0]
        row = len(data) // shape[0] if shape[0] else 0
        parts, offset, free = [], 0, list(pool)
        while offset < shape[0]:
            sizes = sorted({rows(p) for p in free if rows(p) <= shape[0] - offset}, reverse=True)
            hit = None
            for size in sizes:
                digest = content_digest(data[offset * row:(offset + size) * row], dtype)
                hits = [p for p in free if rows(p) == size and digests[p] == digest]
                if hits:
                    hit = max(hits, key=lambda p: _similarity(p, name))
                    break
            if hit is None:
                return None
            parts.append(hit)
            free.remove(hit)
            offset += rows(hit)
        return parts if len(parts) >= 2 else None

    def interleaved_sources(self, name: str, pool: list[str]) -> list[str] | None:
        dtype, shape = self.layout_b[name]
        data = None
        for k in _chunk_counts(shape):
            sized = [p for p in pool if self.layout_a[p][1][0] == shape[0] // k]
            if len(sized) < k:
                continue
            data = data if data is not None else self.b.read(name)
            sources, free = [], list(sized)
            for part in _strided(data, shape, k):
                digest = content_digest(part, dtype)
                hits = [p for p in free if self.digest_a[p] == digest]
                if not hits:
                    break
                sources.append(max(hits, key=lambda p: _similarity(p, name)))
                free.remove(sources[-1])
            if len(sources) == k:
                return sources
        return None

    def take(self, source: str, target: str, transforms: list[dict]) -> None:
        self.used.add(source)
        if source != target:
            self.renames[source] = target
        self.steps["transform"] += transforms

    def unused_a(self) -> list[str]:
        return [name for name in self.layout_a if name not in self.used]


def _similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def _chunk_counts(shape: tuple[int, ...]) -> list[int]:
    return [k for k in (2, 3, 4) if shape and shape[0] >= k and shape[0] % k == 0]


def _blocks(data: bytes, k: int) -> list[bytes]:
    size = len(data) // k
    return [data[j * size:(j + 1) * size] for j in range(k)]


def _single_ops(shape: tuple[int, ...]) -> list[str]:
    ops = ["transpose"] if len(shape) == 2 else []
    return ops + (["swap_halves"] if shape and shape[0] > 0 and shape[0] % 2 == 0 else [])


def _strided(data: bytes, shape: tuple[int, ...], k: int) -> list[bytes]:
    """Rows j, j+k, j+2k, ... of a tensor, for each j: the chunks an interleaving mixed."""
    rows = np.frombuffer(data, dtype=np.uint8).reshape(shape[0], -1)
    return [np.ascontiguousarray(rows[j::k]).tobytes() for j in range(k)]


def _values(data: bytes, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    return decode(np.frombuffer(data, dtype=UNSIGNED[ITEMSIZE[dtype]]).reshape(shape), dtype)


def _constant_step(values: np.ndarray, target: np.ndarray, dtype: str, name: str) -> dict | None:
    if values.size == 0:
        return None
    difference = target.astype(np.float64) - values.astype(np.float64)
    constant = difference.flat[0]
    if not np.isfinite(constant) or constant == 0 or not np.allclose(difference, constant, rtol=0, atol=1e-6 *
                                                                          max(1.0, abs(constant))):
        return None
    if values.dtype.kind != "f" and not np.iinfo(values.dtype).min <= constant <= np.iinfo(values.dtype).max:
        return None  # no constant of this integer type takes one tensor to the other
    value = round(float(constant), 6) if values.dtype.kind == "f" else int(constant)
    return {"op": "add_constant", "key": name, "value": value}


def diff_files(a: Checkpoint, b: Checkpoint, with_rules: bool) -> dict:
    """``keydiff.diff``, and with ``with_rules`` the inferred rules and what they leave unexplained; a rule that
    would drop every tensor of A and invent B explains nothing, and is not proposed (``nothing_matched``)."""
    found = diff(a, b)
    if with_rules:
        rules, unexplained = infer(a, b)
        dropped = sum(1 for step in rules.to_data().get("steps", []) if step.get("op") == "drop")
        if a.entries and dropped == len(a.entries):
            found["nothing_matched"] = True
        else:
            found["rules"], found["unexplained"] = rules.to_data(), unexplained
    return found
