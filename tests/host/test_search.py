"""The conversion search's candidate: pure, from a refused load's keys and shapes."""

from hypothesis import given
from hypothesis import strategies as st

from compat.host.search import (
    MOST_SUBSET_ARGUMENTS,
    argument_subsets,
    build_refused,
    candidate,
    feature_switches,
    flat_arguments,
    flipped_switches,
    forward_in_time,
    inherited_arguments,
    inherited_defaults,
    invented_tensors,
    lost_tensors,
    neutral_value,
    new_arguments,
    offset_steps,
    one_by_one,
    releases_between,
    rotary_steps,
    rule_lines,
    rule_summary,
    without_argument,
)
from compat.shared.rules import RuleSet


def keys(missing: dict, unexpected: dict, shape=()):
    return {"keys": {"missing": sorted(missing), "unexpected": sorted(unexpected), "shape": list(shape),
                     "dtype": [], "shapes": {**missing, **unexpected}}}


def test_renames_pair_by_shape_and_a_norms_scale_is_one_name_whatever_it_is_called():
    """x-transformers 0.28.4 -> 1.31.3: LayerNorm's ``weight`` became ``gamma`` and its bias went; ``net`` became
    ``ff`` and the second linear moved from index 3 to 2."""
    found = keys({"layers.0.0.gamma": [32], "layers.1.ff.2.weight": [32, 128], "final_norm.gamma": [32]},
                 {"layers.0.0.weight": [32], "layers.0.0.bias": [32], "layers.1.net.3.weight": [32, 128],
                  "norm.weight": [32], "norm.bias": [32]})
    rule = candidate(found)
    assert rule["rename"] == {"layers.0.0.weight": "layers.0.0.gamma", "layers.1.net.3.weight": "layers.1.ff.2.weight",
                              "norm.weight": "final_norm.gamma"}
    assert [(s["op"], s["key"]) for s in rule["steps"]] == [("drop", "layers.0.0.bias"), ("drop", "norm.bias")]
    RuleSet.from_data(rule)  # valid rule data


def test_a_key_the_producer_never_had_is_added_with_the_value_that_leaves_its_layer_as_it_was():
    rule = candidate(keys({"norm.gamma": [8], "norm.beta": [8], "gate.weight": [8, 8]}, {}))
    added = {s["key"]: s["value"] for s in rule["steps"] if s["op"] == "add"}
    assert added == {"norm.gamma": 1.0, "norm.beta": 0.0, "gate.weight": 0.0}
    assert invented_tensors(rule) == sorted(added)


def test_a_changed_shape_with_the_same_values_is_reshaped_or_transposed_and_otherwise_nothing_is_tried():
    moved = [{"key": "a", "producer": [4, 6], "consumer": [6, 4]}, {"key": "b", "producer": [2, 3], "consumer": [6]}]
    rule = candidate(keys({}, {}, moved))
    assert rule["steps"] == [{"op": "transpose", "key": "a"},
                             {"op": "reshape", "key": "b", "shape": [6], "from": [2, 3]}]
    assert candidate(keys({}, {}, [{"key": "q", "producer": [64, 32], "consumer": [128, 32]}])) is None


def test_a_key_whose_size_an_argument_sets_is_built_at_the_producers_size_and_the_rest_still_converts():
    changes = [{"key": "rotary.inv_freq", "producer": [16], "consumer": [8]},
               {"key": "a", "producer": [4, 6], "consumer": [6, 4]}]
    finding = dict(keys({}, {}, changes), sizing={"rotary.inv_freq": {"path": "layers.rotary_emb_dim", "value": 32},
                                                  "junk": "not an entry"})
    rule = candidate(finding)
    assert rule == {"steps": [{"op": "transpose", "key": "a"}],
                    "consumer_args": {"layers": {"rotary_emb_dim": 32}}}


def test_rotary_pairs_are_moved_in_whole_heads_of_the_query_and_key_rows_and_nowhere_else():
    shapes = {"enc.rotary_pos_emb.inv_freq": [8], "enc.layers.0.to_q.weight": [64, 32],
              "enc.layers.0.to_k.weight": [64, 32], "enc.layers.0.to_v.weight": [64, 32],
              "enc.odd.to_q.weight": [24, 8]}
    steps = rotary_steps(shapes, {"enc.layers.0.to_q.weight": "enc.layers.0.attn.to_q.weight"}, forward=False)
    assert steps == [{"op": "deinterleave", "key": "enc.layers.0.to_k.weight", "chunks": 2, "groups": 4},
                     {"op": "deinterleave", "key": "enc.layers.0.attn.to_q.weight", "chunks": 2, "groups": 4}]
    assert rotary_steps({k: v for k, v in shapes.items() if "inv_freq" not in k}, {}, True) == []
    assert forward_in_time("1.30.0", "1.30.1") and not forward_in_time("1.30.1", "1.30.0")
    assert forward_in_time("1.30.1", "git:main")


def test_a_new_switch_is_flipped_only_where_it_is_about_a_feature_the_config_turns_on():
    producer = {"layers.rotary_pos_emb": False, "layers.dim_head": 64}
    consumer = dict(producer, **{"layers.rotary_embed_values": False, "layers.sandwich_norm": False,
                                 "layers.rotary_interpolation_factor": 1.0})
    config = {"layers": {"rotary_pos_emb": True, "dim": 32}}
    assert feature_switches(producer, consumer, config) == {"layers": {"rotary_embed_values": True}}
    assert feature_switches(producer, consumer, {"layers": {"rotary_pos_emb": False}}) == {}
    assert feature_switches({}, consumer, config) == {}  # a producer that recorded nothing: no evidence
    assert one_by_one({"layers": {"a": True, "b": False}, "wrapper": {"c": True}}) == [
        {"layers": {"a": True}}, {"layers": {"b": False}}, {"wrapper": {"c": True}}]


def test_nothing_to_try_when_the_keys_fit_or_the_shapes_were_not_recorded():
    assert candidate(keys({}, {})) is None
    assert candidate({"keys": {"missing": ["a"], "unexpected": ["b"]}}) is None
    assert candidate({"status": "ok"}) is None


def test_what_was_lost_is_read_from_the_workers_notes_with_norms():
    notes = ["lossy: dropped norm.bias (norm 3.2), which is not all zeros", "cast x: rounded"]
    assert lost_tensors({"rule_notes": notes}) == ["norm.bias (norm 3.2)"]


def test_rule_lines_say_each_step():
    lines = rule_lines({"rename": {"a": "b"}, "steps": [{"op": "drop", "key": "c", "shape": [2]},
                                                        {"op": "add", "key": "d", "shape": [2], "dtype": "F32",
                                                         "value": 1.0}],
                        "consumer_args": {"x": 1}})
    assert lines == ["rename a -> b", "drop c", "add d (value 1.0)", "set x=1"]


names = st.lists(st.from_regex(r"[a-z]{1,3}(\.[a-z0-9]{1,3}){0,3}", fullmatch=True), min_size=1, max_size=8,
                 unique=True)


@given(names, names, st.sampled_from([[4], [4, 4], [2, 8]]))
def test_every_key_is_accounted_for_once(saved, expected, shape):
    """Each saved key is renamed or dropped, each expected key is a rename's target or added; never both."""
    common = set(saved) & set(expected)
    saved, expected = [k for k in saved if k not in common], [k for k in expected if k not in common]
    rule = candidate(keys({k: shape for k in expected}, {k: shape for k in saved}))
    if not saved and not expected:
        assert rule is None
        return
    renames = rule.get("rename", {})
    dropped = [s["key"] for s in rule.get("steps", []) if s["op"] == "drop"]
    added = [s["key"] for s in rule.get("steps", []) if s["op"] == "add"]
    assert sorted(list(renames) + dropped) == sorted(saved)
    assert sorted(list(renames.values()) + added) == sorted(expected)
    assert all(neutral_value(k, shape) in (0.0, 1.0) for k in added)


def test_rule_summary_counts_by_op():
    assert rule_summary({"rename": {"a": "b", "c": "d"}, "steps": [{"op": "drop", "key": "e"}]}) == "2 renames, 1 drop"
    assert rule_summary({}) == "nothing"


def test_a_changed_default_is_passed_with_the_producers_value_when_the_outputs_differ():
    changed = {"layers.norm_add_unit_offset": [False, True], "wrapper.emb_dropout": [0.0, 0.1]}
    differ = {"keys": {"missing": [], "unexpected": [], "shapes": {}}, "defaults_changed": changed,
              "outputs": {"logits": {"bitwise": False, "max_abs": 2.0}}}
    rule = candidate(differ)
    assert rule == {"consumer_args": {"layers": {"norm_add_unit_offset": False}, "wrapper": {"emb_dropout": 0.0}}}
    assert rule_lines(rule) == ["set layers.norm_add_unit_offset=False",
                                "set wrapper.emb_dropout=0.0"]
    assert rule_summary(rule) == "2 settings"
    agree = dict(differ, outputs={"logits": {"bitwise": True}})
    assert candidate(agree) is None, "outputs that agree need no search"
    assert candidate(dict(differ, defaults_changed={})) is None


def test_a_changed_default_joins_the_key_conversion_when_the_keys_moved_too():
    finding = {"keys": {"missing": [], "unexpected": ["norm.beta"], "shapes": {"norm.beta": [4]}},
               "defaults_changed": {"layers.norm_add_unit_offset": [False, True]}}
    rule = candidate(finding)
    assert rule["steps"] == [{"op": "drop", "key": "norm.beta", "shape": [4]}]
    assert rule["consumer_args"] == {"layers": {"norm_add_unit_offset": False}}
    assert RuleSet.from_data(rule).consumer_args == rule["consumer_args"]


def test_an_argument_the_producer_never_had_takes_its_first_value_on_the_way_to_the_consumer():
    producer = {"layers.depth": 2}
    introduced_off = {"layers.depth": 2, "layers.norm_add_unit_offset": False}
    consumer = {"layers.depth": 2, "layers.norm_add_unit_offset": True, "layers.same": 1}
    inherited = inherited_defaults(producer, consumer, [introduced_off, introduced_off, consumer], {})
    assert inherited == {"layers.norm_add_unit_offset": False}
    assert inherited_defaults(producer, consumer, [consumer], {}) == {}, "new with the consumer: nothing to go by"
    assert inherited_defaults(producer, consumer, [introduced_off], {"layers": {"norm_add_unit_offset": True}}) == {}
    finding = {"keys": {"missing": [], "unexpected": ["norm.beta"], "shapes": {"norm.beta": [4]}}}
    assert candidate(finding, inherited)["consumer_args"] == {"layers": {"norm_add_unit_offset": False}}


def test_the_releases_between_are_walked_from_the_producers_side_in_version_order():
    recorded = {"1.27.0": ({"a": 1}, {}), "1.31.0": ({"a": 1, "offset": False}, {}),
                "1.31.1": ({"a": 1, "offset": False}, {}), "1.31.3": ({"a": 1, "offset": True}, {}),
                "0.1.0": ({}, {})}
    releases = ["1.31.3", "1.27.0", "1.31.1", "1.31.0", "0.1.0"]  # as a matrix may list them
    assert inherited_arguments("1.27.0", "1.31.3", releases, recorded.get) == {"offset": False}
    assert inherited_arguments("1.27.0", "1.31.0", releases, recorded.get) == {}
    assert inherited_arguments("0.1.0", "1.31.3", releases, recorded.get) == {}, "a producer with no record"
    assert inherited_arguments("1.27.0", "9.9.9", releases, recorded.get) == {}


def test_the_releases_between_are_walked_from_the_producers_side_in_either_direction():
    releases = ["1.31.3", "1.27.0", "1.10.0", "1.31.1", "1.9.0"]
    assert releases_between("1.9.0", "1.31.1", releases) == ["1.10.0", "1.27.0", "1.31.1"]
    assert releases_between("1.31.1", "1.9.0", releases) == ["1.27.0", "1.10.0", "1.9.0"]
    assert releases_between("1.27.0", "1.27.0", releases) == []
    assert releases_between("1.27.0", "2.0.0", releases) is None


def test_new_arguments_are_the_consumers_defaults_the_producer_lacked_and_the_config_leaves_open():
    producer = {"layers.heads": 8}
    consumer = {"layers.heads": 8, "layers.norm_add_unit_offset": True, "layers.dim_head": 64}
    assert new_arguments(producer, consumer, {}) == ["layers.norm_add_unit_offset", "layers.dim_head"]
    assert new_arguments(producer, consumer, {"layers": {"dim_head": 32}}) == ["layers.norm_add_unit_offset"]
    assert new_arguments({}, consumer, {}) == [], "a producer that recorded nothing is no evidence"


def test_offsets_follow_the_renames_for_tensors_the_releases_start_at_different_constants():
    """x-transformers 1.31.3 starts a LayerNorm's ``gamma`` at 0 (it stores ``w - 1``); 0.28.4 starts its ``weight``
    at 1: the same layer's values are 1 apart. Equal starts, dropped tensors and tensors only one side has give none."""
    rule = {"rename": {"layers.0.0.gamma": "layers.0.0.weight", "final_norm.gamma": "norm.weight"},
            "steps": [{"op": "drop", "key": "layers.1.0.gamma", "shape": [4]}]}
    producer = {"layers.0.0.gamma": 0.0, "final_norm.gamma": 0.0, "layers.1.0.gamma": 0.0, "same.bias": 0.0}
    consumer = {"layers.0.0.weight": 1.0, "norm.weight": 1.0, "norm.bias": 0.0, "same.bias": 0.0}
    assert offset_steps(rule, producer, consumer) == [
        {"op": "add_constant", "key": "norm.weight", "value": 1.0},
        {"op": "add_constant", "key": "layers.0.0.weight", "value": 1.0}]
    assert offset_steps(None, {"g": 1.0}, {"g": 0.0}) == [{"op": "add_constant", "key": "g", "value": -1.0}]
    assert offset_steps(None, {"g": "1"}, {"g": 0.0}) == [], "a recorded value that is not a number is no evidence"


def test_a_square_matrix_saved_where_its_packed_skew_part_is_expected_pairs_by_name_both_ways():
    """peft 0.15.2's OFT rotation ``oft_r`` [r, n, n] is 0.16.0's ``oft_R.weight`` [r, n(n-1)/2]; 0.16.0 has no
    per-output scale ``oft_s`` (dropped), and back it is added at the value a fresh adapter starts it at (1, where the
    worker recorded it; the name alone would give 0)."""
    forward = keys({"m.fc1.oft_R.weight": [4, 28], "m.fc2.oft_R.weight": [4, 120]},
                   {"m.fc1.oft_r": [4, 8, 8], "m.fc2.oft_r": [4, 16, 16], "m.fc1.oft_s": [64, 1]})
    rule = candidate(forward)
    assert rule["rename"] == {"m.fc1.oft_r": "m.fc1.oft_R.weight", "m.fc2.oft_r": "m.fc2.oft_R.weight"}
    assert [(s["op"], s["key"]) for s in rule["steps"]] == [
        ("pack_skew", "m.fc1.oft_R.weight"), ("pack_skew", "m.fc2.oft_R.weight"), ("drop", "m.fc1.oft_s")]
    RuleSet.from_data(rule)

    back = dict(keys({"m.fc1.oft_r": [4, 8, 8], "m.fc1.oft_s": [64, 1]}, {"m.fc1.oft_R.weight": [4, 28]}),
                expected_constants={"m.fc1.oft_r": 0.0, "m.fc1.oft_s": 1.0})
    rule = candidate(back)
    assert rule["rename"] == {"m.fc1.oft_R.weight": "m.fc1.oft_r"}
    assert rule["steps"] == [{"op": "unpack_skew", "key": "m.fc1.oft_r"},
                             {"op": "add", "key": "m.fc1.oft_s", "shape": [64, 1], "dtype": "F32", "value": 1.0}]
    assert candidate(dict(back, expected_constants={}))["steps"][1]["value"] == 0.0

    # not one repacking apart (28 values are not the triangle of 9 x 9): no pairing, the keys are dropped and added
    unrelated = candidate(keys({"m.fc1.oft_R.weight": [4, 28]}, {"m.fc1.oft_r": [4, 9, 9]}))
    assert "rename" not in unrelated and {s["op"] for s in unrelated["steps"]} == {"drop", "add"}


def test_a_new_boolean_config_field_is_tried_against_its_default_and_nothing_else_is():
    """peft 0.16.0 reads a 0.15.2 config that never mentions use_cayley_neumann with its default, True: an
    approximation 0.15.2 did not compute."""
    finding = {"config": {"new_defaults": {"use_cayley_neumann": True, "num_cayley_neumann_terms": 5,
                                           "bias": "none"}}}
    assert flipped_switches(finding) == {"use_cayley_neumann": False}
    assert flipped_switches({}) == {} and flipped_switches({"config": {"unknown_type": "X"}}) == {}
    assert flipped_switches({"config": {"new_defaults": ["not", "a", "mapping"]}}) == {}


def test_an_argument_left_out_of_a_rule_keeps_the_rest():
    rule = {"rename": {"a": "b"}, "consumer_args": {"layers": {"norm_add_unit_offset": True, "softclamp": 50.0}}}
    assert without_argument(rule, "layers.norm_add_unit_offset") == {"rename": {"a": "b"}, "consumer_args": {
        "layers": {"softclamp": 50.0}}}
    assert without_argument({"consumer_args": {"layers": {"x": 1}}}, "layers.x") == {}
    assert rule["consumer_args"]["layers"]["norm_add_unit_offset"] is True  # not changed in place


def test_part_of_a_rules_arguments_keeps_its_renames_and_steps_largest_part_first():
    rule = {"rename": {"a": "b"}, "steps": [{"op": "drop", "key": "c"}],
            "consumer_args": {"layers": {"x": 1, "y": 2}, "z": 3}}
    parts = argument_subsets(rule)
    assert [sorted(flat_arguments(part)) for part in parts] == [
        ["layers.x", "layers.y"], ["layers.x", "z"], ["layers.y", "z"], ["layers.x"], ["layers.y"], ["z"], []]
    assert all(part["rename"] == rule["rename"] and part["steps"] == rule["steps"] for part in parts)
    assert parts[-1] == {"rename": {"a": "b"}, "steps": [{"op": "drop", "key": "c"}]}
    assert parts[3]["consumer_args"] == {"layers": {"x": 1}}  # emptied dictionaries removed
    assert argument_subsets({"rename": {"a": "b"}, "consumer_args": {"x": 1}}) == [{"rename": {"a": "b"}}]
    assert argument_subsets({"rename": {"a": "b"}}) == []
    too_many = {"consumer_args": {f"a{n}": n for n in range(MOST_SUBSET_ARGUMENTS + 1)}}
    assert argument_subsets(too_many) == []


def test_a_consumer_that_cannot_be_built_is_told_from_other_failures():
    assert build_refused({"status": "broken", "reason": "consumer cannot build it: TypeError: x"})
    assert not build_refused({"status": "broken", "reason": "producer 1.0: TypeError: x"})
    assert not build_refused({"status": "ok"})
