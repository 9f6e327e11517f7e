"""Adapters across real peft releases: a dropped adapter is `diverged` (not applied), never `equivalent`; the
conversion search carries what can be carried of an OFT adapter between its parametrisations.

peft 0.15.2 saves OFT as oft_r/oft_s; 0.21.x no longer refuses such adapters (0.16.0-0.20.0 did): it loads them
with only a "missing adapter keys" warning and computes the base model's output. 0.17.1 -> 0.18.0 keeps the keys
but changes the Cayley-Neumann numerics (a drift of 5e-5, caught by the recipe's tight tolerance). 0.16.0 keeps the
rotation as the packed upper triangle of its skew-symmetric matrix (oft_R.weight) and has no per-output scale
(oft_s): the rotation converts exactly, the scale is lost unless it is all ones.
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
    # the plain loads: what a user gets without a conversion (the search's answer is the next test's)
    session = prepare(matrix, cache_dir, options=RunOptions(progress=lambda message: None, search=False))
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


ROTATION_ONLY = """
import torch

from compat.fixtures.peft import MLP_TARGETS, RECIPES, AdapterRecipe, _mlp, _oft, _run_mlp, _vectors


class RotationOnly(AdapterRecipe):
    \"\"\"An OFT adapter whose per-output scale (0.14.0-0.15.2's oft_s) stayed at one: all it does is rotate.\"\"\"

    def attach(self, base):
        model = super().attach(base)
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if "oft_s" in name:
                    parameter.fill_(1.0)
        return model


RECIPES = {"mlp-oft-exact": RECIPES["mlp-oft-exact"],
           "mlp-oft-rotation": RotationOnly("mlp-oft-rotation", MLP_TARGETS, _mlp, _oft(exact=True), _vectors, _run_mlp)}
"""


def test_the_search_carries_an_oft_rotation_across_peft_016_and_names_the_scale_it_cannot(tmp_path, cache_dir):
    fixtures = tmp_path / "peft_rotation.py"
    fixtures.write_text(ROTATION_ONLY + f"\n# {tmp_path}\n")  # fresh cells
    matrix = tmp_path / "m.yaml"
    matrix.write_text(f"libraries:\n  peft:\n    import: peft\n    fixtures: {fixtures}\n"
                      "    versions: ['0.15.2', '0.16.0']\n    recipes:\n"
                      "      mlp-oft-exact: {tolerance: {atol: 5.0e-6, rtol: 0.0}}\n"
                      "      mlp-oft-rotation: {tolerance: {atol: 5.0e-6, rtol: 0.0}}\n")
    session = prepare(matrix, cache_dir, options=RunOptions(progress=lambda message: None))
    results = {r.cell.id: r for r in session.run.execute()}

    # a rotation-only 0.15.2 adapter: refused by 0.16.0 as saved, converted by the search, outputs within 5e-6
    rotation = results["peft/mlp-oft-rotation/0.15.2->0.16.0"]
    assert rotation.verdict == "converted", rotation.summary
    assert "Trying to load old OFT checkpoint" in rotation.finding["search"]["before"]
    rule = rotation.finding["rule"]
    assert rule["consumer_args"] == {"use_cayley_neumann": False}  # 0.16.0's default approximates the rotation
    assert rule["rename"] == {f"base_model.model.{layer}.oft_r": f"base_model.model.{layer}.oft_R.weight"
                              for layer in ("fc1", "fc2")}
    assert [step["op"] for step in rule["steps"]] == ["pack_skew", "pack_skew", "drop", "drop"]
    assert rotation.finding["adapter"]["applied"] and rotation.finding["outputs"]["output"]["max_abs"] < 5e-6

    # the usual adapter, whose scale was trained too: the rotation is carried, the scale cannot be
    trained = results["peft/mlp-oft-exact/0.15.2->0.16.0"]
    assert trained.verdict == "lossy", trained.summary
    assert "base_model.model.fc1.oft_s (norm" in trained.summary and "base_model.model.fc2.oft_s" in trained.summary
    assert trained.finding["outputs"]["output"]["max_abs"] > 1e-2

    # back: a 0.16.0 adapter into 0.15.2 (which loads it as a no-op as saved) gets its matrix and a scale of one
    back = results["peft/mlp-oft-exact/0.16.0->0.15.2"]
    assert back.verdict == "converted", back.summary
    assert "adapter not applied" in back.finding["search"]["before"]
    steps = back.finding["rule"]["steps"]
    assert {step["op"] for step in steps} == {"unpack_skew", "add"}
    assert all(step["value"] == 1.0 for step in steps if step["op"] == "add")  # the fresh adapter's own scale
