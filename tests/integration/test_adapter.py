"""Adapters across real peft releases: a dropped adapter is `diverged` (not applied), never `equivalent`.

peft 0.15.2 saves OFT as oft_r/oft_s; 0.21.x no longer refuses such adapters (0.16.0-0.20.0 did): it loads them
with only a "missing adapter keys" warning and computes the base model's output. 0.17.1 -> 0.18.0 keeps the keys
but changes the Cayley-Neumann numerics (a drift of 5e-5, caught by the recipe's tight tolerance).
"""

from __future__ import annotations

from pathlib import Path

from compat.api import prepare
from compat.host.runner import RunOptions

PROJECT = Path(__file__).resolve().parent.parent.parent


def test_a_dropped_adapter_is_diverged_not_applied_and_drift_is_caught(tmp_path, cache_dir):
    fixtures = tmp_path / "peft.py"
    fixtures.write_text((PROJECT / "compat" / "fixtures" / "peft.py").read_text() + f"\n# {tmp_path}\n")  # fresh cells
    matrix = tmp_path / "m.yaml"
    matrix.write_text(f"libraries:\n  peft:\n    import: peft\n    fixtures: {fixtures}\n"
                      "    versions: ['0.15.2', '0.17.1', '0.18.0', '0.21.2']\n"
                      "    recipes:\n      mlp-oft: {tolerance: {atol: 1.0e-6, rtol: 0.0}}\n")
    session = prepare(matrix, cache_dir, options=RunOptions(progress=lambda message: None))
    results = {r.cell.id: r for r in session.run.execute()}

    dropped = results["peft/mlp-oft/0.15.2->0.21.2"]
    assert dropped.verdict == "diverged" and dropped.summary.startswith("adapter not applied"), dropped.summary
    evidence = dropped.finding
    assert not evidence.get("load_error") and evidence["adapter"]["applied"] is False
    assert any("missing adapter keys" in message for message in evidence["load_warnings"])
    assert evidence["keys"]["unexpected"]  # oft_r / oft_s, which 0.21.2 does not read
    assert evidence["outputs"]["base"]["bitwise"]  # the control: the base model itself agrees across releases

    same = results["peft/mlp-oft/0.15.2->0.15.2"]
    assert same.verdict == "identical" and same.finding["adapter"]["applied"], same.summary

    drift = results["peft/mlp-oft/0.17.1->0.18.0"]
    assert drift.verdict == "diverged" and drift.finding["adapter"]["applied"], drift.summary
    stats = drift.finding["outputs"]["output"]
    assert 1e-6 < stats["max_abs"] < 1e-2 and stats["cosine"] > 0.999  # silent, small, and still caught
    assert any("cayley-neumann" in message.lower() for message in drift.finding["load_warnings"])
