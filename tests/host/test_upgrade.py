"""compat upgrade writes only a carried cell's checkpoint, and says what does not carry over otherwise."""

from __future__ import annotations

import torch
from safetensors.torch import load_file, save_file

from compat.host.outcome import CellResult
from compat.host.plan import Cell
from compat.host.upgrade import evidence_releases, what_is_lost, write_upgraded
from compat.host.user import UserCheckpoint
from compat.shared.stamp import read_stamp


def _result(verdict: str, finding: dict) -> CellResult:
    return CellResult(Cell("x-transformers", "user", "0.30.0", "0.33.0"), verdict, verdict, "why", finding)


def test_a_converted_cell_is_written_with_its_rule_and_stamp(tmp_path):
    source = tmp_path / "in.safetensors"
    weights = {"net.weight": torch.arange(6.0).reshape(2, 3) + 0.5, "norm.weight": torch.full((3,), 1.25)}
    save_file(weights, str(source))
    user = UserCheckpoint(source, "x-transformers", {"dim": 3}, "0.30.0")
    done = write_upgraded(user, _result("converted", {"rule": {"rename": {"net.weight": "ff.weight"}}}),
                          tmp_path / "out.safetensors")
    written = load_file(str(done.written))
    assert sorted(written) == ["ff.weight", "norm.weight"]
    assert torch.equal(written["ff.weight"], weights["net.weight"])
    stamp = read_stamp(done.written)
    assert (stamp["library"], stamp["version"], stamp["config"]) == ("x-transformers", "0.33.0", {"dim": 3})
    assert stamp["upgraded_from"] == "0.30.0 (in.safetensors)"


def test_nothing_is_written_for_a_cell_that_did_not_carry(tmp_path):
    source = tmp_path / "in.safetensors"
    save_file({"w": torch.ones(2)}, str(source))
    user = UserCheckpoint(source, "x-transformers", {}, "0.30.0")
    for verdict in ("incompatible", "diverged", "not-applicable", "error"):
        done = write_upgraded(user, _result(verdict, {}), tmp_path / f"{verdict}.safetensors")
        assert done.written is None and not (tmp_path / f"{verdict}.safetensors").exists()
    lost = what_is_lost(_result("incompatible", {"keys": {"missing": [f"m{i}" for i in range(10)],
                                                          "unexpected": ["u"]},
                                                 "outputs": {"logits": {"max_abs": 0.5, "cosine": 0.9}}}))
    assert lost[0] == "the target release needs 10 tensors the checkpoint does not have: m0, m1, m2, m3, m4, m5, " \
                      "m6, m7 ..."
    assert lost[1] == "the target release has no place for 1 tensor: u"  # one tensor, not "1 tensors"
    assert lost[2] == "output logits: max abs 0.5, cosine 0.9"


def test_the_releases_between_are_asked_for_only_where_a_new_argument_could_reach_a_target():
    """A 1.27.0 checkpoint diverged in 1.31.3, which has an argument 1.27.0 did not: the matrix's releases between
    (not those already planned, not those beyond) must produce. Not for a carried target, nor where the best
    conversion dropped values, nor where the target has no new argument."""
    matrix = ["1.27.0", "1.30.0", "1.31.1", "1.31.3", "1.42.0"]

    def cell(consumer: str, verdict: str, notes=(), rule=None) -> CellResult:
        return CellResult(Cell("x-transformers", "user", "1.27.0", consumer), verdict, verdict, "why",
                          {"status": "ok", "rule_notes": list(notes), "rule": rule})
    new = {"1.31.3": ["layers.norm_add_unit_offset"]}

    def wanted(*results):
        return evidence_releases(list(results), lambda c: new.get(c.consumer, []), matrix, ["1.27.0", "1.31.3"],
                                 "1.27.0")
    assert wanted(cell("1.31.3", "diverged")) == ["1.30.0", "1.31.1"]
    assert wanted(cell("1.31.3", "converted")) == []
    assert wanted(cell("1.31.3", "converted", rule={"rename": {"a": "b"}})) == []
    # reached only by offsets: an offset may stand in for the new argument, so the releases between are asked too
    offsets = {"steps": [{"op": "add_constant", "key": "norm.weight", "value": -1.0}]}
    assert wanted(cell("1.31.3", "converted", rule=offsets)) == ["1.30.0", "1.31.1"]
    assert wanted(cell("1.31.3", "lossy", ["lossy: dropped norm.bias (norm 3.2), which is not all zeros"])) == []
    new.clear()
    assert wanted(cell("1.31.3", "diverged")) == []
