"""Hostile and corrupt .safetensors files always end in compat's own error, never a crash or a huge allocation."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from compat.shared.checkpoint import CheckpointError, SafetensorsFile


def raw_file(tmp_path, header: dict | bytes, data: bytes = b"", length: int | None = None):
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    path = tmp_path / "x.safetensors"
    path.write_bytes(struct.pack("<Q", len(body) if length is None else length) + body + data)
    return path


GOOD = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}


def test_a_real_file_reads_back(tmp_path):
    save_file({"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(3, dtype=torch.bfloat16)},
              str(tmp_path / "ok.safetensors"), metadata={"k": "v"})
    file = SafetensorsFile(tmp_path / "ok.safetensors")
    assert {t.name: t.shape for t in file} == {"w": (2, 3), "b": (3,)} and file.metadata == {"k": "v"}
    assert file.read_bytes("w") == torch.arange(6.0).numpy().tobytes()


@pytest.mark.parametrize("header, data, length, message", [
    (GOOD, b"\0" * 8, 10**12, "header length"),
    (GOOD, b"\0" * 8, 0, "header length"),
    (b"{not json", b"", None, "not valid JSON"),
    (b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {}}', b"\0" * 4, None, "duplicate key"),
    ({"a": {"dtype": "F33", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, None, "unknown dtype"),
    ({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8, None, "non-negative"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 80]}}, b"\0" * 8, None, "outside the data"),
    ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, None, "12 expected"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8, None, "overlap"),
    ({"__metadata__": {"k": 1}, **GOOD}, b"\0" * 8, None, "__metadata__"),
    ([1, 2], b"", None, "not a JSON object"),
])
def test_each_hostile_header_is_named(tmp_path, header, data, length, message):
    path = raw_file(tmp_path, header, data, length)
    with pytest.raises(CheckpointError, match=message) as caught:
        SafetensorsFile(path)
    assert str(path) in str(caught.value)


def test_pickles_are_refused(tmp_path):
    torch.save({"w": torch.ones(1)}, tmp_path / "model.bin")
    with pytest.raises(CheckpointError, match="pickle-based"):
        SafetensorsFile(tmp_path / "model.bin")


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_random_corruptions_end_in_checkpoint_error(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / "m.safetensors"
    save_file({"w": torch.arange(12.0).reshape(3, 4), "b": torch.zeros(2, dtype=torch.int64)}, str(path))
    blob = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(blob) - 1))
        blob[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(blob)))
    path.write_bytes(bytes(blob[:cut]))
    try:
        file = SafetensorsFile(path)
        for info in file:
            file.read_bytes(info.name)
    except CheckpointError:
        pass  # a clear error is the only acceptable failure


def test_a_compat_artifact_is_read_as_its_model_and_its_manifest_is_checked(tmp_path):
    from compat.host.keydiff import open_checkpoint

    save_file({"w": torch.ones(2, 3)}, str(tmp_path / "model.safetensors"))
    save_file({"x": torch.ones(1)}, str(tmp_path / "inputs.safetensors"))
    manifest = {"status": "ok", "keys": {"w": {"shape": [2, 3], "dtype": "float32"}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert list(open_checkpoint(tmp_path).entries) == ["w"]
    for bad, problem in [({"status": 1}, "object with a status"),
                         (dict(manifest, keys={"w": {"shape": "2x3", "dtype": "float32"}}), "keys must map"),
                         (dict(manifest, keys={"w": {"shape": [3, 2], "dtype": "float32"}}), "disagrees"),
                         ({"status": "broken", "reason": "boom"}, "could not produce")]:
        (tmp_path / "manifest.json").write_text(json.dumps(bad))
        with pytest.raises(CheckpointError, match=problem):
            open_checkpoint(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not a compat manifest"):
        open_checkpoint(tmp_path)
