"""safetensors as a library under test, on real releases: a dtype a later release writes and an earlier one refuses,
a writer that makes files no release reads, and a hostile file refused cleanly."""

from __future__ import annotations

from pathlib import Path

from compat.api import prepare

PROJECT = Path(__file__).resolve().parent.parent.parent
MATRIX = f"""libraries:
  safetensors:
    import: safetensors.torch
    fixtures: {PROJECT / "compat" / "fixtures" / "safetensors.py"}
    versions: [0.4.1, 0.4.2, 0.4.3, 0.4.4]
    recipes:
      torch-f8_e4m3: {{}}
      torch-f32: {{}}
      no-tensors: {{}}
      hostile-overlapping-offsets: {{probe: true}}
"""


def test_safetensors_releases(tmp_path, cache_dir):
    (tmp_path / "m.yaml").write_text(MATRIX)
    results = {r.cell.id.removeprefix("safetensors/"): r for r in prepare(tmp_path / "m.yaml", cache_dir).run.execute()}

    # float8: written from 0.4.2, refused by 0.4.1 with its own message (the whole file, not only the tensor)
    refused = results["torch-f8_e4m3/0.4.2->0.4.1"]
    assert refused.verdict == "incompatible" and "Dtype not understood: F8_E4M3" in refused.finding["load_error"]
    assert results["torch-f8_e4m3/0.4.2->0.4.4"].verdict == "identical"
    unwritten = results["torch-f8_e4m3/0.4.1->0.4.2"]
    assert unwritten.verdict == "not-applicable" and "does not write it" in unwritten.summary
    assert results["torch-f32/0.4.1->0.4.4"].verdict == "identical"

    # a file with metadata and no tensors: 0.4.3 writes a header no release reads, 0.4.4 one every release reads
    for reader in ("0.4.1", "0.4.3", "0.4.4"):
        assert results[f"no-tensors/0.4.3->{reader}"].verdict == "incompatible"
        assert results[f"no-tensors/0.4.4->{reader}"].verdict == "identical"
        assert results[f"no-tensors/0.4.4->{reader}"].finding["file"]["metadata_read"] == {"only": "metadata"}

    # a hostile file: each release refuses it with an error, in a process of its own
    probe = results["hostile-overlapping-offsets/0.4.4->0.4.4"]
    assert probe.verdict == "identical" and "clean refusal" in probe.summary
