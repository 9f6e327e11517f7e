"""Hostile input: every class of file that used to end in a traceback (or run for minutes) ends in compat's own error,
quickly; and a short fuzzing profile over every surface (``benchmarks/fuzz.py`` runs the long one)."""

from __future__ import annotations

import json
import resource
import signal
import struct
import time

import pytest
from hostile import seeds
from hostile.strategies import YAML_BOMBS, for_surface, write_tensors
from hostile.surfaces import SURFACES, outcome
from hypothesis import HealthCheck, given, settings


@pytest.fixture(autouse=True)
def time_limit():
    """A case that runs for minutes is a failure of its own (alias expansion used to): stop it at 30 s."""
    def stop(signum, frame):
        raise TimeoutError("over 30 s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


DEEP_LIST = b"[" * 5000 + b"]" * 5000
DEEP_OBJECT = b'{"k":' * 3000 + b"0" + b"}" * 3000


def header_file(header: bytes, data: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + data


def report_with(**cell_fields) -> bytes:
    report = seeds.report()
    report["cells"][0].update(cell_fields)
    return json.dumps(report).encode()


def rules_text(step: str) -> bytes:
    return f"steps:\n  - {step}\n".encode()


CASES = [
    # deeply nested JSON or YAML, in every reader
    ("safetensors", header_file(DEEP_LIST), "nests deeper"),
    ("stamp", DEEP_OBJECT, "nests deeper"),
    ("manifest", DEEP_LIST, "nests deeper"),
    ("index", DEEP_OBJECT, "nests deeper"),
    ("report", b'{"schema": 1, "cells": [' + DEEP_LIST + b"]}", "nests deeper"),
    ("matrix", b"a: " + DEEP_LIST, "nested deeper"),
    ("rules", b"rename: " + DEEP_OBJECT, "nested deeper"),
    ("recipe-config", b"a: " + DEEP_LIST, "nested deeper"),
    # recursive aliases, and alias expansion (billion laughs)
    ("matrix", YAML_BOMBS[1].encode(), "nested deeper"),
    ("rules", YAML_BOMBS[0].encode(), "more than 100000 values"),
    # values of the wrong type
    ("rules", rules_text("{op: {a: 1}, key: x}"), "a step needs an op"),
    ("rules", rules_text("{op: cast, key: e, dtype: [F32]}"), "dtype must be a safetensors dtype"),
    ("rules", rules_text("{op: reshape, key: c, shape: [true, 3]}"), "shape must be a list of at most"),
    ("safetensors", header_file(b'{"a": {"dtype": {"x": 1}, "shape": [1], "data_offsets": [0, 4]}}', b"\0" * 4),
     "unknown dtype"),
    ("matrix", seeds.MATRIX.replace("glu-qknorm: {tolerance: {atol: 1.0e-4, outputs: {logits: {atol: 1.0e-3}}}}",
                                    "glu-qknorm: {tolerance: {outputs: 0.5}}").encode(), "expected a mapping"),
    ("matrix", seeds.MATRIX.replace("timeout: 600", "timeout: true").encode(), "expected a number"),
    ("report", report_with(evidence={"keys": None}), "evidence.keys: Input should be a valid dictionary"),
    ("report", report_with(evidence={"keys": {"shape": [{"key": "b"}]}}), "evidence.keys.shape[0].producer"),
    ("report", report_with(summary=["a"]), "cells[0].summary: Input should be a valid string"),
    ("stamp", b"[1, 2]", "must map argument names to values"),
    ("index", b'{"weight_map": {"a": 5}}', "weight_map must map tensor names to file names"),
    # YAML scalars PyYAML accepts but cannot construct, and files that are not UTF-8
    ("matrix", b"defaults: {timeout: 2021-13-45}\n", "cannot be read as tag:yaml.org,2002:timestamp"),
    ("rules", b"consumer_args: {a: !!timestamp nope}\n", "cannot be read as tag:yaml.org,2002:timestamp"),
    ("recipe-config", b"dim: !!int abc\n", "cannot be read as tag:yaml.org,2002:int"),
    ("matrix", b"libraries: {x: caf\xe9}\n", "is not UTF-8"),
    ("report", b'{"schema": 1, "x": "\xff"}', "is not UTF-8"),
    # names with a NUL byte or an unpaired surrogate
    ("index", b'{"weight_map": {"a": "good\\u0000.safetensors"}}', "NUL byte or an unpaired surrogate"),
    ("safetensors", header_file(b'{"\\ud800": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', b"\0" * 4),
     "NUL byte or an unpaired surrogate"),
    ("matrix", b'libraries:\n  "x\\0y": {import: x, versions: [1.0], recipes: [a]}\n', "NUL byte"),
    ("rules", b'rename: {a.net.w: "a\\0b"}\n', "text with a NUL byte"),
    ("report", report_with(summary="\ud800"), "NUL byte or an unpaired surrogate"),
    # a shard outside the index's folder
    ("index", b'{"weight_map": {"a": "../../etc/passwd"}}', "a shard is a file name in the index's folder"),
    # tensors that pass validation but crashed later
    ("odd-tensors", write_tensors({"t": ("F32", [0, 2**40], b"")}) + b"\n--compat-fuzz--\n"
     + write_tensors({"t": ("F32", [0, 2**40], b"")}), None),
    ("odd-tensors", write_tensors({"t": ("F32", [1] * 64, b"\0" * 4)}) + b"\n--compat-fuzz--\n"
     + write_tensors({"t": ("F32", [1] * 64, b"\1" * 4)}), "64 dimensions; compat reads tensors of at most 32"),
    ("odd-tensors", write_tensors({"m": ("BOOL", [3], b"\1\0\1")}) + b"\n--compat-fuzz--\n"
     + write_tensors({"m": ("BOOL", [3], b"\1\1\1")}), None),
    ("odd-tensors", write_tensors({"f": ("F8_E4M3", [4], b"\1\2\3\4"), "g": ("F8_E5M2", [2], b"\5\6")})
     + b"\n--compat-fuzz--\n" + write_tensors({"f": ("F8_E4M3", [4], b"\4\3\2\1"), "g": ("F8_E5M2", [2], b"\6\5")}),
     None),
    ("odd-tensors", write_tensors({"t0": ("I64", [], b"\xff" * 8)}) + b"\n--compat-fuzz--\n"
     + write_tensors({"t0": ("I64", [], b"\x7f" * 8)}), None),
    # regular expressions in rules are checked when the rule is read, not when a name first matches
    ("rules", b"rename_patterns: [{pattern: 'a(b)', replacement: '\\2'}]\n", "invalid group reference 2"),
    ("rules", b"rename_patterns: [{pattern: 'a(', replacement: 'x'}]\n", "bad pattern"),
    # a rule that would make a tensor of 2**40 values in memory
    ("rules", rules_text("{op: add, key: huge, shape: [1048576, 1048576], dtype: F32, value: 0}"),
     "a tensor of at most 1024 MiB"),
    ("rules", b"rename_patterns: [{pattern: 'a', replacement: 'x\\'}]\n", "bad escape"),
    ("report", json.dumps({**seeds.report(), "changes": {**seeds.report()["changes"], "changed": [
        {"id": "lib/r/1.0->2.0", "before": "identical", "after": "known-break", "kind": "new-red"}]}}).encode(),
     "changes.changed[0].summary: Field required"),
]


@pytest.mark.parametrize("surface, data, message", CASES, ids=[f"{c[0]}-{n}" for n, c in enumerate(CASES)])
def test_each_class_of_hostile_input_is_one_clean_error(surface, data, message, tmp_path):
    started = time.perf_counter()
    try:
        SURFACES[surface](data, tmp_path)
    except Exception as exc:  # noqa: BLE001 - the test judges what was raised
        from compat.shared.errors import CompatError

        assert isinstance(exc, CompatError), f"{type(exc).__name__}: {exc}"
        assert message and message in str(exc), str(exc)
    else:
        assert message is None, f"accepted; expected an error saying {message!r}"
    assert time.perf_counter() - started < 5


PICKLES = ["a sparse_coo tensor", "a tensor on the meta device", "a nested tensor", "dtype complex64"]


@pytest.mark.parametrize("index, message", enumerate(PICKLES))
def test_pickles_of_tensors_safetensors_cannot_hold_are_refused(index, message, tmp_path):
    from hostile.strategies import _PICKLES

    from compat.shared.errors import CompatError

    with pytest.raises(CompatError, match=message):
        SURFACES["pickle"](_PICKLES()[index], tmp_path)


@pytest.mark.parametrize("surface", sorted(SURFACES))
def test_a_short_fuzzing_profile_finds_no_crash(surface, tmp_path):
    """Each case within 10 s, and the whole profile raising this process's peak memory by less than 1 GB."""
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    # derandomized: CI sees the same 300 cases every run (benchmarks/fuzz.py explores new ones)
    @settings(max_examples=300, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(for_surface(surface))
    def run(data: bytes) -> None:
        started = time.perf_counter()
        assert outcome(SURFACES[surface], data, tmp_path) in ("ok", "clean")
        assert time.perf_counter() - started < 10

    run()
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024 < 1024
