"""Hypothesis strategies for hostile input: mutations of valid seeds (structural and byte-level) and inputs built from
scratch. Each strategy gives the bytes of one file."""

from __future__ import annotations

import json
import re
import struct

from hypothesis import strategies as st

from compat.shared.dtypes import ITEMSIZE
from hostile import seeds

SPECIAL_TEXT = ["\x00", "a\x00b", "\ud800", "x\udfffy", "../../etc/passwd", "x" * 5000, "", " ", "1.0", "latest",
                ">=1", "*", "0.0.0.0.0.0", "名前", "\n", "$(rm -rf /)", "%s%s", "-1", "1e309", "NaN"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(SPECIAL_TEXT))


def deep(depth: int, kind: str = "list") -> str:
    """A placeholder that ``dumps`` turns into ``depth`` nested lists or objects (too deep for json.dumps)."""
    return f"@@deep:{depth}:{kind}@@"


def _nested(match: re.Match) -> str:
    depth, kind = int(match.group(1)), match.group(2)
    return ("[" * depth + "0" + "]" * depth) if kind == "list" else ('{"k":' * depth + "0" + "}" * depth)


DEEP = st.builds(deep, st.integers(40, 3000), st.sampled_from(["list", "dict"]))
VALUES = st.one_of(SCALARS, DEEP, st.lists(SCALARS, max_size=4), st.dictionaries(st.text(max_size=6), SCALARS,
                                                                                   max_size=4))


def _paths(value, path=()):
    yield path
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, path + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, path + (index,))


def _replace(value, path, new):
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replace(value[path[0]], path[1:], new)
    return copy


@st.composite
def mutated(draw, seed):
    """The seed with one to three values replaced by hostile ones, keys deleted or unknown keys added."""
    value = seed
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(_paths(value))))
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        target = value
        for step in path:
            target = target[step]
        if action == "delete" and path:
            parent = path[:-1]
            container = value
            for step in parent:
                container = container[step]
            copy = dict(container) if isinstance(container, dict) else list(container)
            del copy[path[-1]]
            value = _replace(value, parent, copy)
        elif action == "add" and isinstance(target, dict):
            value = _replace(value, path, {**target, draw(st.sampled_from(["zz", "\x00", "name"])): draw(VALUES)})
        else:
            value = _replace(value, path, draw(VALUES))
    return value


def dumps(value) -> bytes:
    text = json.dumps(value, allow_nan=True)
    return re.sub(r'"@@deep:(\d+):(\w+)@@"', _nested, text).encode()


@st.composite
def byte_mutated(draw, data: bytes):
    """Bytes flipped, inserted, deleted or the file cut short."""
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif action == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        else:
            del data[at:]
    return bytes(data)


YAML_BOMBS = [
    "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefghi", "bcdefghij")),
    "a: &a [*a]\n", "a: " + "[" * 3000 + "]" * 3000 + "\n", "a: " + "{x: " * 500 + "1" + "}" * 500 + "\n",
    "a: 2021-13-45\n", "a: !!int abc\n", "a: !!timestamp nope\n", "a: !!python/object:os.system ls\n",
    "a: !!binary aGk=\n", "? [a, b]\n: 1\n", "a: 1\na: 2\n", "- a\n- b\n", "'\\x00': 1\n", '"a\\0": 1\n',
    "a: \"\\ud800\"\n", "a: !!float inf\n", "a: 1e400\n", "a: 0x7fffffffffffffffffff\n", "a: ~\n", "{}", "",
]


def yaml_file(seed_text: str):
    """YAML from a seed: structural mutations (as JSON, which YAML reads), byte mutations, and known bombs."""
    seed = __import__("yaml").safe_load(seed_text)
    return st.one_of(mutated(seed).map(dumps), byte_mutated(seed_text.encode()),
                     st.sampled_from(YAML_BOMBS).map(str.encode),
                     st.tuples(st.sampled_from(YAML_BOMBS), st.just(seed_text)).map(lambda p: (p[1] + p[0]).encode()),
                     st.binary(max_size=200))


def json_file(seed: dict):
    return st.one_of(mutated(seed).map(dumps), byte_mutated(dumps(seed)), DEEP.map(dumps), st.binary(max_size=200),
                     st.just(b'{"a": "\\ud800"}'), st.just(b'{"schema": 1, "cells": [' + b"[" * 5000 + b"]" * 5000 + b"]}"))


def _with_header(header: dict, data: bytes, length_delta: int = 0) -> bytes:
    raw = json.dumps(header, allow_nan=True).encode()
    return struct.pack("<Q", max(len(raw) + length_delta, 0)) + raw + data


def _split(file: bytes) -> tuple[dict, bytes]:
    (length,) = struct.unpack("<Q", file[:8])
    return json.loads(file[8:8 + length]), file[8 + length:]


def safetensors_file(seed: bytes | None = None):
    """A safetensors file: its header mutated as data (offsets, shapes, dtypes, names, duplicates, depth), its bytes
    mutated, its header length wrong, or nothing like one."""
    seed = seed or seeds.safetensors_bytes()
    header, data = _split(seed)
    return st.one_of(
        st.builds(_with_header, mutated(header), st.just(data)),
        st.builds(_with_header, st.just(header), st.just(data), st.sampled_from([-3, 1, 2**20, -2**10])),
        byte_mutated(seed), st.binary(max_size=64),
        st.builds(lambda d: struct.pack("<Q", len(d)) + d, DEEP.map(dumps)),
        st.just(struct.pack("<Q", 40) + b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":1}' + b"\0" * 8),
    )


# valid files whose tensors are odd: every dtype, zero-size dimensions beside huge ones, many dimensions
def _dims(count: int, zero: bool):
    return st.lists(st.integers(1, 3), min_size=count, max_size=count).map(
        lambda dims: dims if not zero else [0, 2**40, *dims][:max(count, 2)])


@st.composite
def odd_tensors(draw) -> dict[str, tuple[str, list[int], bytes]]:
    tensors = {}
    for index in range(draw(st.integers(1, 4))):
        dtype = draw(st.sampled_from(sorted(ITEMSIZE)))
        count = draw(st.sampled_from([0, 1, 2, 3, 33, 64, 65, 80]))
        shape = draw(_dims(count, draw(st.booleans()))) if count else []
        if count > 8:
            shape = [1] * count
        size = 1
        for dim in shape:
            size *= dim
        tensors[f"t{index}"] = (dtype, shape, draw(st.binary(min_size=size * ITEMSIZE[dtype],
                                                             max_size=size * ITEMSIZE[dtype])))
    return tensors


def write_tensors(tensors: dict[str, tuple[str, list[int], bytes]]) -> bytes:
    header, offset, data = {}, 0, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        data += raw
    return _with_header(header, data)


def _pickles() -> list[bytes]:
    import io

    import torch

    def save(value) -> bytes:
        buffer = io.BytesIO()
        torch.save(value, buffer)
        return buffer.getvalue()

    values = [{"w": torch.randn(2, 2).to_sparse()}, {"w": torch.empty(2, device="meta")},
              {"w": torch.nested.nested_tensor([torch.randn(2), torch.randn(3)])}, {"w": torch.randn(2).to(torch.cfloat)},
              {1: torch.randn(2)}, {"w": 5}, {"state_dict": {"w": torch.randn(2)}}, {"w": torch.randn(2, 3).t()},
              torch.randn(3), [torch.randn(2)], {"w": torch.zeros(0, 5)}, {"w": torch.randn(2).to(torch.float8_e4m3fn)},
              {"w\x00": torch.randn(2)}, {"\ud800": torch.randn(2)}, {"model": {"a": {"b": torch.randn(2)}}},
              {"w": torch.randn(4)[::2]}, {"w": torch.tensor(True)}, {"w": torch.randn(2).to(torch.uint16)}]
    return [save(value) for value in values]


def pickle_file():
    return st.deferred(lambda: st.one_of(st.sampled_from(_PICKLES()), st.sampled_from(_PICKLES()).flatmap(byte_mutated),
                                         st.binary(max_size=100)))


_CACHE: dict = {}


def _PICKLES() -> list[bytes]:  # noqa: N802 - built once, on first use (it imports torch)
    if "pickles" not in _CACHE:
        _CACHE["pickles"] = _pickles()
    return _CACHE["pickles"]


@st.composite
def same_layout(draw, tensors: dict) -> dict:
    """The same names, dtypes and shapes with other bytes: what ``convert --verify`` and the diff compare."""
    return {name: (dtype, shape, draw(st.binary(min_size=len(raw), max_size=len(raw))))
            for name, (dtype, shape, raw) in tensors.items()}


def odd_pair():
    join = lambda pair: write_tensors(pair[0]) + b"\n--compat-fuzz--\n" + write_tensors(pair[1])  # noqa: E731
    return st.one_of(st.tuples(odd_tensors(), odd_tensors()).map(join),
                     odd_tensors().flatmap(lambda a: st.tuples(st.just(a), same_layout(a))).map(join))


def for_surface(name: str):
    """The hostile inputs of one surface."""
    report = seeds.report()
    return {
        "matrix": lambda: yaml_file(seeds.MATRIX),
        "rules": lambda: yaml_file(seeds.yaml_text(seeds.RULES)),
        "recipe-config": lambda: yaml_file(seeds.yaml_text(seeds.CONFIG)),
        "report": lambda: json_file(report),
        "safetensors": lambda: safetensors_file(),
        "stamp": lambda: json_file(seeds.CONFIG),
        "manifest": lambda: json_file(seeds.manifest(seeds.tensors())),
        "index": lambda: json_file(seeds.index({"a.net.w": "good.safetensors", "b": "good.safetensors"})),
        "odd-tensors": odd_pair,
        "pickle": pickle_file,
    }[name]()
