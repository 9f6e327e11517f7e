"""The artifact helpers recipes share: digests and the rule engine on in-memory state dicts."""

import hashlib

import torch

from compat.envside import artifact
from compat.shared.rules import RuleSet


def test_a_digest_is_sha256_over_dtype_shape_and_raw_bytes_so_every_release_computes_the_same():
    tensor = torch.randn(5, 7).to(torch.bfloat16)
    expected = hashlib.sha256(b"torch.bfloat16|[5, 7]|" + tensor.view(torch.uint8).numpy().tobytes()).hexdigest()
    assert artifact.tensor_digest(tensor) == expected
    assert artifact.tensor_digest(tensor.t()) != expected
    assert artifact.tensor_digest(torch.zeros(0)) == hashlib.sha256(b"torch.float32|[0]|").hexdigest()


def test_rules_on_a_state_dict_give_each_tensor_its_own_memory():
    state = {"a": torch.randn(4, 6).to(torch.bfloat16), "b": torch.randn(3), "empty": torch.zeros(0),
             "scalar": torch.tensor(2.0), "flags": torch.tensor([True, False])}
    rules = RuleSet([{"op": "rename", "map": {"a": "A"}}, {"op": "swap_halves", "key": "A"},
                     {"op": "transpose", "key": "A"}])
    converted, notes = artifact.apply_rules(rules, state)
    assert notes == []
    assert torch.equal(converted["A"], torch.cat([state["a"][2:], state["a"][:2]]).t())
    for key in ("b", "empty", "scalar", "flags"):
        assert converted[key].dtype == state[key].dtype and torch.equal(converted[key], state[key])
    before = state["b"].clone()
    converted["b"].add_(1)  # a library's converter may work in place: the source must not move with it
    assert torch.equal(state["b"], before)


def test_a_fused_tensor_is_the_concatenation_and_leaves_its_sources_alone():
    state = {"q": torch.randn(2, 3), "k": torch.randn(2, 3)}
    converted, _ = artifact.apply_rules(RuleSet([{"op": "fuse", "keys": ["q", "k"], "into": "qk"}]), state)
    assert torch.equal(converted["qk"], torch.cat([state["q"], state["k"]]))
    before = state["q"].clone()
    converted["qk"].mul_(2)
    assert torch.equal(state["q"], before)


def test_rules_on_a_state_dict_say_what_a_drop_loses():
    state = {"kept": torch.ones(2), "bias": torch.full((2,), 3.0), "zeros": torch.zeros(2)}
    rules = RuleSet([{"op": "drop", "key": "bias"}, {"op": "drop", "key": "zeros"}])
    converted, notes = artifact.apply_rules(rules, state)
    assert list(converted) == ["kept"]
    assert notes == ["lossy: dropped bias (norm 4.243), which is not all zeros"]
