"""safetensors as a library under test, on real releases: a dtype a later release writes and an earlier one refuses,
a writer that makes files no release reads, and a hostile file refused cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from compat.api import prepare, run_and_report

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


UNINSTALLABLE = f"""libraries:
  safetensors:
    import: safetensors.torch
    fixtures: {PROJECT / "compat" / "fixtures" / "safetensors.py"}
    versions: [0.2.6]
    recipes: [torch-f32]
    uninstallable:
    - versions: "<0.2.6"
      reason: no wheel for this Python
    - versions: "==0.2.8"
      reason: declared by mistake
"""


def test_releases_that_cannot_install_are_tried_and_shown(tmp_path, cache_dir):
    """Releases before 0.2.6 have no wheel for this Python and their sdists need Rust: each is tried and shown with
    uv's reason; 0.2.8 installs, so declaring it is stale (red), in the report, the command and pytest."""
    (tmp_path / "m.yaml").write_text(UNINSTALLABLE)
    outcome = run_and_report(prepare(tmp_path / "m.yaml", cache_dir), tmp_path / "report")
    assert outcome.red == 1 and outcome.counts == {"identical": 1}
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    tried = {o["version"]: o for o in report["uninstallable"]}
    assert sorted(tried) == ["0.0.1", "0.2.0", "0.2.1", "0.2.2", "0.2.3", "0.2.4", "0.2.5", "0.2.8"]
    assert tried["0.2.8"]["installs"] and not any(tried[v]["installs"] for v in tried if v != "0.2.8")
    assert "No module named 'setuptools_rust'" in tried["0.2.4"]["error"]
    text = (tmp_path / "report" / "report.md").read_text()
    assert ("safetensors 0.2.4 cannot be installed here: no wheel for this Python (ModuleNotFoundError: No module "
            "named 'setuptools_rust')") in text
    assert "**safetensors 0.2.8 installs: the declaration at" in text and "is stale" in text

    tests = subprocess.run([sys.executable, "-m", "pytest", f"--compat-matrix={tmp_path / 'm.yaml'}",
                            f"--compat-cache-dir={cache_dir}", "-p", "no:cacheprovider", "-rxf"],
                           cwd=tmp_path, capture_output=True, text=True)
    assert "1 failed, 1 passed, 7 xfailed" in tests.stdout, tests.stdout[-2000:]
    assert "FAILED m.yaml::safetensors/cannot-install/0.2.8" in tests.stdout
