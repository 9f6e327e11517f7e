"""Rules: inverses are exact, and inference recovers random renames and transforms from contents alone."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings, strategies as st
from safetensors.torch import load_file, save_file

from compat.keydiff import convert, infer, open_checkpoint
from compat.envside.rules import RuleError, RuleSet

OPS = st.sampled_from([None, "transpose", "swap_halves"])


def random_state(draw, count):
    state = {}
    for index in range(count):
        rows = draw(st.integers(1, 4)) * 2
        cols = draw(st.integers(1, 5))
        dtype = draw(st.sampled_from([torch.float32, torch.bfloat16, torch.int64]))
        seed = draw(st.integers(0, 2**31))
        values = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed)) * 100
        state[f"layers.{index}.w"] = values.to(dtype)
    return state


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_inference_recovers_random_renames_and_transforms(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("rules")
    state = random_state(data.draw, data.draw(st.integers(1, 6)))
    truth = RuleSet()
    for name in state:
        if data.draw(st.booleans()):
            truth.rename[name] = name.replace("layers", "blocks") + ".moved"
        op = data.draw(OPS)
        if op:
            truth.transforms.append({"key": truth.new_name(name), "op": op})
    save_file(state, str(folder / "a.safetensors"))
    convert(open_checkpoint(folder / "a.safetensors"), truth, folder / "b.safetensors")
    a, b = open_checkpoint(folder / "a.safetensors"), open_checkpoint(folder / "b.safetensors")
    rules, unexplained = infer(a, b)
    assert unexplained == []
    convert(a, rules, folder / "c.safetensors")
    converted, expected = load_file(str(folder / "c.safetensors")), load_file(str(folder / "b.safetensors"))
    assert converted.keys() == expected.keys()
    for name in expected:  # exactly zero difference
        assert torch.equal(converted[name].view(torch.uint8), expected[name].view(torch.uint8)), name
    # and back: the inverse of the inferred rules restores A bit for bit
    convert(open_checkpoint(folder / "c.safetensors"), rules.inverse(), folder / "d.safetensors")
    restored = load_file(str(folder / "d.safetensors"))
    assert all(torch.equal(restored[n].view(torch.uint8), state[n].contiguous().view(torch.uint8)) for n in state)


def test_swap_scale_shift_is_rediscovered_and_converts_exactly(tmp_path):
    """Flux: original final_layer.adaLN_modulation.1.weight is diffusers' norm_out.linear.weight, halves swapped."""
    weight = torch.randn(12, 6, generator=torch.Generator().manual_seed(3)).to(torch.bfloat16)
    save_file({"final_layer.adaLN_modulation.1.weight": weight}, str(tmp_path / "original.safetensors"))
    save_file({"norm_out.linear.weight": torch.cat([weight[6:], weight[:6]])}, str(tmp_path / "diffusers.safetensors"))
    cli = [sys.executable, "-m", "compat.cli"]
    result = subprocess.run([*cli, "diff", str(tmp_path / "original.safetensors"),
                             str(tmp_path / "diffusers.safetensors"), "--infer", "--rules-out",
                             str(tmp_path / "rules.yaml")], capture_output=True, text=True)
    assert "op: swap_halves" in result.stdout and "final_layer.adaLN_modulation.1.weight: norm_out.linear.weight" \
        in result.stdout
    verify = subprocess.run([*cli, "convert", str(tmp_path / "original.safetensors"), "--rules",
                             str(tmp_path / "rules.yaml"), "-o", str(tmp_path / "out.safetensors"), "--verify",
                             str(tmp_path / "diffusers.safetensors")], capture_output=True, text=True)
    assert verify.returncode == 0 and "bit for bit" in verify.stdout
    # an unswapped conversion would not pass the verification
    (tmp_path / "plain.yaml").write_text("rename: {final_layer.adaLN_modulation.1.weight: norm_out.linear.weight}\n")
    wrong = subprocess.run([*cli, "convert", str(tmp_path / "original.safetensors"), "--rules",
                            str(tmp_path / "plain.yaml"), "-o", str(tmp_path / "wrong.safetensors"), "--verify",
                            str(tmp_path / "diffusers.safetensors")], capture_output=True, text=True)
    assert wrong.returncode == 1 and "different" in wrong.stdout


def test_bad_rules_are_named():
    with pytest.raises(RuleError, match="unknown field"):
        RuleSet.from_data({"renames": {}}, "r.yaml")
    with pytest.raises(RuleError, match="transforms\\[0\\]"):
        RuleSet.from_data({"transforms": [{"key": "w", "op": "rotate"}]}, "r.yaml")
    with pytest.raises(RuleError, match="cannot be inverted"):
        RuleSet.from_data({"rename_patterns": [{"pattern": "a", "replacement": "b"}]}).inverse()
