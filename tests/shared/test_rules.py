"""Rules: inverses are exact, and inference recovers random renames and transforms from contents alone."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from compat.host.inference import infer
from compat.host.keydiff import convert, open_checkpoint
from compat.shared.checkpoint import CheckpointError
from compat.shared.rules import RuleError, RuleSet


def random_state(draw, count):
    state = {}
    for index in range(count):
        rows = draw(st.integers(1, 2)) * 6
        cols = draw(st.integers(1, 5))
        dtype = draw(st.sampled_from([torch.float32, torch.bfloat16, torch.int64]))
        seed = draw(st.integers(0, 2**31))
        values = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed)) * 100
        state[f"layers.{index}.w"] = values.to(dtype)
    return state


def random_step(draw, name: str, tensor: torch.Tensor) -> list[dict]:
    """One random single-tensor change, as rule steps keyed by the tensor's new name."""
    op = draw(st.sampled_from([None, "transpose", "swap_halves", "permute_chunks", "interleave", "reshape", "cast"]))
    if op is None:
        return []
    if op == "permute_chunks":
        order = draw(st.permutations([0, 1, 2]).filter(lambda o: list(o) != [0, 1, 2]))
        return [{"op": op, "key": name, "order": list(order)}]
    if op == "interleave":
        return [{"op": op, "key": name, "chunks": 2}]
    if op == "reshape":
        return [{"op": op, "key": name, "shape": [tensor.numel()], "from": list(tensor.shape)}]
    if op == "cast":
        return [{"op": op, "key": name, "dtype": "F64", "from": "F32"}] if tensor.dtype == torch.float32 else []
    return [{"op": op, "key": name}]


def same_bytes(x: torch.Tensor, y: torch.Tensor) -> bool:
    return x.dtype == y.dtype and x.shape == y.shape and torch.equal(x.reshape(-1).view(torch.uint8),
                                                                     y.reshape(-1).view(torch.uint8))


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_inference_recovers_random_renames_and_transforms(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("rules")
    state = random_state(data.draw, data.draw(st.integers(2, 6)))
    renames, steps = {}, []
    names = list(state)
    fuse = data.draw(st.booleans()) and state[names[0]].dtype == state[names[1]].dtype and \
        state[names[0]].shape[1] == state[names[1]].shape[1]
    for name in names[2 if fuse else 0:]:
        if data.draw(st.booleans()):
            renames[name] = name.replace("layers", "blocks") + ".moved"
        steps += random_step(data.draw, renames.get(name, name), state[name])
    if fuse:  # two tensors of A become one of B
        steps.append({"op": "fuse", "keys": names[:2], "into": "fused.qk"})
    if data.draw(st.booleans()):  # B has a tensor A has not (a new norm weight of ones)
        steps.append({"op": "add", "key": "new.norm.weight", "shape": [7], "dtype": "F32", "value": 1.0})
    truth = RuleSet([{"op": "rename", "map": renames}] + steps)
    save_file(state, str(folder / "a.safetensors"))
    convert(open_checkpoint(folder / "a.safetensors"), truth, folder / "b.safetensors")
    a, b = open_checkpoint(folder / "a.safetensors"), open_checkpoint(folder / "b.safetensors")
    rules, unexplained = infer(a, b)
    assert unexplained == []
    convert(a, rules, folder / "c.safetensors")
    converted, expected = load_file(str(folder / "c.safetensors")), load_file(str(folder / "b.safetensors"))
    assert converted.keys() == expected.keys()
    for name in expected:  # exactly zero difference
        assert same_bytes(converted[name], expected[name]), (name, rules.to_data())
    # and back: the inverse of the inferred rules restores A bit for bit
    written = RuleSet.from_data(rules.to_data())  # what --rules-out writes reads back as the same rule set
    assert written.to_data() == rules.to_data()
    convert(open_checkpoint(folder / "c.safetensors"), written.inverse(), folder / "d.safetensors")
    restored = load_file(str(folder / "d.safetensors"))
    assert restored.keys() == state.keys()
    assert all(same_bytes(restored[n], state[n].contiguous()) for n in state)


STEPS = st.sampled_from([
    {"op": "transpose", "key": "w"},
    {"op": "swap_halves", "key": "w", "dim": 1},
    {"op": "permute_chunks", "key": "w", "order": [2, 0, 1, 3]},
    {"op": "interleave", "key": "w", "chunks": 3},
    {"op": "deinterleave", "key": "w", "chunks": 4},
    {"op": "interleave", "key": "w", "chunks": 2, "groups": 3},
    {"op": "reshape", "key": "w", "shape": [3, 8, 2], "from": [12, 4]},
    {"op": "cast", "key": "w", "dtype": "I64", "from": "I32"},
    {"op": "add_constant", "key": "w", "value": 5},
    {"op": "split", "key": "w", "into": ["w.a", "w.b"], "sizes": [4, 8]},
    {"op": "fuse", "keys": ["w", "bias"], "into": "wb", "sizes": [12, 1]},
    {"op": "add", "key": "extra", "shape": [2], "dtype": "F32", "value": 0.5},
    {"op": "rename", "map": {"w": "weight", "bias": "b"}},
])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.lists(STEPS, min_size=1, max_size=4))
def test_a_rule_set_then_its_inverse_is_the_identity(steps):
    state = {"w": np.arange(48, dtype=np.int32).reshape(12, 4), "bias": np.arange(4, dtype=np.int32)[None] * 7}
    layout = [(name, "I32", array.shape) for name, array in state.items()]
    rules = RuleSet(steps)
    try:
        forward = rules.apply(layout, lambda n: state[n].tobytes())
        middle = dict(zip([n for n, _, _ in forward.layout], forward.tensors()))
        fits = True
    except RuleError:
        fits = False  # a sequence that does not fit the tensors (a reshape after a transpose) is refused, not guessed
    assume(fits)
    assume(not forward.notes)  # a step skipped for want of its tensor (renamed away) has nothing to undo
    back = rules.inverse().apply(forward.layout, middle.__getitem__)
    restored = dict(zip([n for n, _, _ in back.layout], back.tensors()))
    assert [(n, d, tuple(s)) for n, d, s in back.layout] == layout
    assert all(restored[name] == array.tobytes() for name, array in state.items())


def test_deinterleave_by_head_is_the_rotary_permutation_of_transformers_llama_converter():
    """``permute(w, n_heads, dim1, dim2)`` in transformers' convert_llama_weights_to_hf: pairs (2i, 2i+1) of each
    head's q/k rows (Meta's rotary) become pairs (i, i + n/2) (transformers'); interleave is the way back."""
    heads, head_dim, width = 3, 8, 5
    w = np.arange(heads * head_dim * width, dtype=np.int32).reshape(heads * head_dim, width)
    hf = w.reshape(heads, head_dim // 2, 2, width).transpose(0, 2, 1, 3).reshape(heads * head_dim, width)
    layout = [("q", "I32", w.shape)]
    done = RuleSet([{"op": "deinterleave", "key": "q", "chunks": 2, "groups": heads}]).apply(
        layout, lambda name: w.tobytes())
    assert next(done.tensors()) == hf.tobytes()
    back = RuleSet([{"op": "interleave", "key": "q", "chunks": 2, "groups": heads}]).apply(
        layout, lambda name: hf.tobytes())
    assert next(back.tensors()) == w.tobytes()


def test_lossy_steps_are_reported(tmp_path):
    save_file({"w": torch.tensor([1.0, 1e-8, 3.0]), "bias": torch.tensor([0.5]), "zero": torch.zeros(2)},
              str(tmp_path / "a.safetensors"))
    rules = RuleSet.from_data({"steps": [{"op": "drop", "key": "bias"}, {"op": "drop", "key": "zero"},
                                         {"op": "cast", "key": "w", "dtype": "BF16", "from": "F32"}]})
    conversion = convert(open_checkpoint(tmp_path / "a.safetensors"), rules, tmp_path / "b.safetensors")
    assert any("dropped bias" in note for note in conversion.notes)
    assert not any("dropped zero" in note for note in conversion.notes)  # dropping zeros loses nothing
    assert any("lossy" in note and "F32 -> BF16" in note for note in conversion.notes)
    assert load_file(str(tmp_path / "b.safetensors"))["w"].tolist() == torch.tensor(
        [1.0, 1e-8, 3.0]).to(torch.bfloat16).tolist()  # rounding like torch's own cast


def test_norm_stored_as_w_minus_one_is_found_and_reversed(tmp_path):
    weight = torch.randn(16, generator=torch.Generator().manual_seed(1))
    save_file({"norm.g": weight}, str(tmp_path / "a.safetensors"))
    save_file({"norm.weight": weight + 1}, str(tmp_path / "b.safetensors"))
    rules, unexplained = infer(open_checkpoint(tmp_path / "a.safetensors"), open_checkpoint(tmp_path / "b.safetensors"))
    assert unexplained == [] and {"op": "add_constant", "key": "norm.weight", "value": 1.0} in rules.steps
    convert(open_checkpoint(tmp_path / "a.safetensors"), rules, tmp_path / "c.safetensors")
    assert same_bytes(load_file(str(tmp_path / "c.safetensors"))["norm.weight"], weight + 1)


def test_qkv_split_and_fuse_of_unequal_sizes(tmp_path):
    """Grouped-query attention: q has more rows than k and v; one fused tensor is three."""
    g = torch.Generator().manual_seed(2)
    q, k, v = torch.randn(8, 4, generator=g), torch.randn(2, 4, generator=g), torch.randn(2, 4, generator=g)
    save_file({"attn.q": q, "attn.k": k, "attn.v": v}, str(tmp_path / "a.safetensors"))
    save_file({"attn.qkv": torch.cat([q, k, v])}, str(tmp_path / "b.safetensors"))
    a, b = open_checkpoint(tmp_path / "a.safetensors"), open_checkpoint(tmp_path / "b.safetensors")
    rules, unexplained = infer(a, b)
    assert unexplained == [] and rules.steps == [{"op": "fuse", "keys": ["attn.q", "attn.k", "attn.v"],
                                                  "into": "attn.qkv", "sizes": [8, 2, 2]}]
    back, unexplained = infer(b, a)
    assert unexplained == [] and back.steps == [{"op": "split", "key": "attn.qkv", "into": ["attn.q", "attn.k",
                                                                                             "attn.v"],
                                                 "sizes": [8, 2, 2]}]


def test_consumer_args_travel_with_the_rule():
    rules = RuleSet.from_data({"rename": {"a": "b"}, "consumer_args": {"use_rmsnorm": True}})
    assert rules.to_data() == {"rename": {"a": "b"}, "consumer_args": {"use_rmsnorm": True}}
    assert rules.inverse().consumer_args == {"use_rmsnorm": True}


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
    with pytest.raises(RuleError, match="steps\\[0\\]"):
        RuleSet.from_data({"steps": [{"key": "w", "op": "rotate"}]}, "r.yaml")
    with pytest.raises(RuleError, match="r.yaml: steps\\[1\\]: permute_chunks: order must be a permutation"):
        RuleSet.from_data({"steps": [{"key": "w", "op": "transpose"},
                                     {"key": "w", "op": "permute_chunks", "order": [0, 0]}]}, "r.yaml")
    with pytest.raises(RuleError, match="missing \\['from'\\]|needs `from`"):
        RuleSet.from_data({"steps": [{"key": "w", "op": "reshape", "shape": [4]}]}).inverse()
    with pytest.raises(RuleError, match="cannot be inverted"):
        RuleSet.from_data({"rename_patterns": [{"pattern": "a", "replacement": "b"}]}).inverse()
    with pytest.raises(RuleError, match="step 1 \\(transpose w\\): shape \\[3\\] is not 2-D"):
        RuleSet.from_data({"steps": [{"key": "w", "op": "transpose"}]}).apply([("w", "F32", (3,))], bytes)


def test_verify_with_a_tolerance_and_pickles_only_on_request(tmp_path):
    weight = torch.randn(8, 8, generator=torch.Generator().manual_seed(4))
    torch.save({"state_dict": {"w": weight}}, tmp_path / "old.pt")
    save_file({"w": weight + 1e-4}, str(tmp_path / "ref.safetensors"))
    (tmp_path / "none.yaml").write_text("{}\n")
    cli = [sys.executable, "-m", "compat.cli", "convert", str(tmp_path / "old.pt"), "--rules",
           str(tmp_path / "none.yaml"), "-o", str(tmp_path / "out.safetensors"), "--verify",
           str(tmp_path / "ref.safetensors")]
    refused = subprocess.run(cli, capture_output=True, text=True)
    assert refused.returncode == 2 and "--allow-pickle" in refused.stderr
    strict = subprocess.run([*cli, "--allow-pickle"], capture_output=True, text=True)
    assert strict.returncode == 1 and "max abs 0.0001" in strict.stdout, strict.stdout + strict.stderr
    loose = subprocess.run([*cli, "--allow-pickle", "--atol", "1e-3"], capture_output=True, text=True)
    assert loose.returncode == 0 and "1 within tolerance" in loose.stdout, loose.stdout + loose.stderr


def test_a_hostile_pickle_is_refused_even_when_allowed(tmp_path):
    import pickle

    class Exploit:
        def __reduce__(self):
            return (print, ("owned",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"w": Exploit()}))
    with pytest.raises(CheckpointError, match="weights_only=True"):
        open_checkpoint(tmp_path / "evil.pt", allow_pickle=True)


def test_pack_skew_keeps_what_a_cayley_rotation_reads_and_unpacks_back():
    """peft 0.14.0-0.15.2 keep OFT's rotation as a full matrix A and read (A - A^T) / 2; 0.16.0 keeps the upper
    triangle of that skew matrix. Packing keeps exactly the skew part; unpacking gives it back bit for bit."""
    generator = np.random.default_rng(0)
    full = generator.normal(size=(3, 5, 5)).astype(np.float32)  # not skew: its symmetric part must go
    rules = RuleSet([{"op": "pack_skew", "key": "oft_r"}])
    packed = rules.apply([("oft_r", "F32", full.shape)], lambda name: full.tobytes())
    assert packed.layout == [("oft_r", "F32", (3, 10))]
    vector = np.frombuffer(next(packed.tensors()), dtype=np.float32).reshape(3, 10)
    skew = 0.5 * (full - full.transpose(0, 2, 1))
    rows, cols = np.triu_indices(5, 1)
    assert np.array_equal(vector, skew[:, rows, cols])
    back = rules.inverse().apply(packed.layout, lambda name: vector.tobytes())
    assert back.layout == [("oft_r", "F32", (3, 5, 5))]
    assert np.array_equal(np.frombuffer(next(back.tensors()), dtype=np.float32).reshape(3, 5, 5), skew)
    with pytest.raises(RuleError, match="n\\(n-1\\)/2"):
        rules.inverse().apply([("oft_r", "F32", (3, 11))], lambda name: b"")
    with pytest.raises(RuleError, match="square"):
        rules.apply([("oft_r", "F32", (3, 4, 5))], lambda name: b"")
