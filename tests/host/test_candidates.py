"""The search's stages of candidates: which are tried, and when they become known."""

import json
from pathlib import Path
from typing import Callable

import pytest

from compat.host import search
from compat.host.candidates import Candidates
from compat.host.plan import Cell, Plan
from compat.host.results import ResultIndex
from compat.host.store import rule_text

CELL = Cell("lib", "rotary", "1.0.0", "2.0.0")
APART = {"status": "ok", "kind": "state-dict", "keys": {"missing": [], "unexpected": [], "shape": []},
         "outputs": {"logits": {"bitwise": False, "max_abs": 0.5}}}
AGREE = {**APART, "outputs": {"logits": {"bitwise": True, "max_abs": 0.0}}}
PRODUCER_DEFAULTS = {"dim": 8}
CONSUMER_DEFAULTS = {"dim": 8, "rotary_embed_values": False, "rotary_xpos": False}  # two new switches about rotary


def candidates_for(tmp_path: Path, constants: tuple[dict, dict] = ({}, {}), config: dict | None = None,
                   ) -> tuple[Candidates, Callable[[dict | None, dict], None]]:
    """Candidates for ``CELL``, its releases' artifacts recording the defaults above, the recipe's ``config`` (a
    rotary model by default) and ``constants`` (producer's, consumer's); and a function that records a finding under
    a rule."""
    results = ResultIndex(tmp_path / "cache")
    for version, defaults, initial in (("1.0.0", PRODUCER_DEFAULTS, constants[0]),
                                       ("2.0.0", CONSUMER_DEFAULTS, constants[1])):
        folder = tmp_path / "artifacts" / version
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text(json.dumps(
            {"defaults": defaults, "config": config or {"rotary_pos_emb": True}, "constants": initial, "keys": {}}))

    def path_for(cell: Cell, rule: dict | None) -> Path:
        return results.folder / cell.library / cell.recipe / f"{abs(hash(rule_text(rule)))}.json"

    def record(rule: dict | None, finding: dict) -> None:
        path = path_for(CELL, rule)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(finding))
    plan = Plan(matrix=None, envs={("lib", "1.0.0"): None, ("lib", "2.0.0"): None}, cells=[CELL])
    found = Candidates(plan, results, lambda library, version, recipe: tmp_path / "artifacts" / version,
                       path_for, lambda cell: None, enabled=True)
    return found, record


def switches(rule: dict) -> dict:
    return rule.get("consumer_args", {})


@pytest.mark.parametrize("second", [AGREE, APART], ids=["second converts", "second fails"])
def test_each_switch_alone_is_tried_only_after_all_of_them_together_failed(tmp_path, second):
    found, record = candidates_for(tmp_path)
    first = found.rule(CELL)[0]
    assert found.retries(CELL) == []  # the first is not checked yet
    record(first, APART)

    together = found.retries(CELL)
    assert [switches(rule) for rule in together] == [{"rotary_embed_values": True, "rotary_xpos": True}]
    assert found.retries(CELL) == together  # the singles wait for the second candidate's finding

    record(together[0], second)
    third = found.retries(CELL)[1:]
    if second is AGREE:
        assert third == []
    else:
        assert sorted(json.dumps(switches(rule), sort_keys=True) for rule in third) == [
            '{"rotary_embed_values": true}', '{"rotary_xpos": true}']


def test_arguments_the_consumer_cannot_be_built_with_are_left_out_one_at_a_time(tmp_path):
    """x-transformers 1.31.1 fails to build with norm_add_unit_offset=True, the value a 1.42 checkpoint was saved
    with; without it, and with 1 added to the norm scales the newer release starts at 0, the model is the same."""
    found, record = candidates_for(tmp_path, constants=({"norm.g": 0.0}, {"norm.g": 1.0}), config={"depth": 2})
    changed = {"layers.norm_add_unit_offset": [True, False], "layers.softclamp": [50.0, None]}
    record(None, dict(APART, defaults_changed=changed))  # the plain load: keys fit, outputs apart
    first = found.rule(CELL)[0]
    assert first == {"consumer_args": {"layers": {"norm_add_unit_offset": True, "softclamp": 50.0}}}
    record(first, {"kind": "state-dict", "status": "broken",
                   "reason": "consumer cannot build it: TypeError: the first argument must be callable"})
    offset = [{"op": "add_constant", "key": "norm.g", "value": 1.0}]
    assert found.retries(CELL) == [{"consumer_args": {"layers": {"softclamp": 50.0}}, "steps": offset},
                                   {"consumer_args": {"layers": {"norm_add_unit_offset": True}}, "steps": offset}]


def test_a_first_candidate_that_builds_is_not_taken_apart(tmp_path):
    found, record = candidates_for(tmp_path)
    record(None, dict(APART, defaults_changed={"layers.softclamp": [50.0, None]}))
    first = found.rule(CELL)[0]
    record(first, {"kind": "state-dict", "status": "broken", "reason": "producer 1.0.0: it failed"})
    assert found.retries(CELL) == []


SOFTCLAMPS = {"layers.norm_add_unit_offset": [True, False], "layers.softclamp_value": [50.0, None],
              "layers.softclamp_output_value": [30.0, None]}


@pytest.mark.parametrize("second", [AGREE, APART], ids=["second converts", "second fails"])
def test_part_of_the_changed_defaults_is_tried_after_every_candidate_before_failed(tmp_path, second):
    """x-transformers 1.42's softclamp values are inert behind switches that are off; 1.31 clamps whenever a value is
    set. A 1.42 checkpoint loads in 1.31.0 with norm_add_unit_offset=True alone, or in 1.31.1 with none of the three
    and 1 added to the norm scales."""
    found, record = candidates_for(tmp_path, constants=({"norm.g": 0.0}, {"norm.g": 1.0}), config={"depth": 2})
    record(None, dict(APART, defaults_changed=SOFTCLAMPS))
    first = found.rule(CELL)[0]
    assert len(search.flat_arguments(first)) == 3
    record(first, APART)
    offset = [{"op": "add_constant", "key": "norm.g", "value": 1.0}]
    assert found.retries(CELL) == [dict(first, steps=offset)]  # the second stage, alone until it is checked

    record(found.retries(CELL)[0], second)
    fourth = found.retries(CELL)[1:]
    if second is AGREE:
        assert fourth == []
        return
    assert {"consumer_args": {"layers": {"norm_add_unit_offset": True}}} in fourth
    assert {"steps": offset} in fourth  # none of the arguments, the scales moved
    assert first not in fourth and dict(first, steps=offset) not in fourth  # tried before
    assert len(fourth) == 2 * 6 + 1  # each proper subset with and without the offset; the empty one only with it
    assert len({json.dumps(rule, sort_keys=True) for rule in fourth}) == len(fourth)


def test_part_of_the_changed_defaults_is_not_tried_where_the_keys_do_not_fit(tmp_path):
    found, record = candidates_for(tmp_path, config={"depth": 2})
    apart_keys = dict(APART, keys={"missing": ["a"], "unexpected": ["b"], "shape": [], "shapes": {"a": [2], "b": [2]}})
    record(None, dict(apart_keys, defaults_changed=SOFTCLAMPS))
    first = found.rule(CELL)[0]
    record(first, dict(apart_keys, keys=dict(apart_keys["keys"], missing=["c"])))
    assert found.retries(CELL) == []


def test_one_changed_default_is_also_tried_left_out(tmp_path):
    """x-transformers 2.17.0 -> 1.30.23: the norms renamed, scales moved by 1, and 2.17's inert softclamp value
    passed by the first candidate turns 1.30.23's clamp on."""
    found, record = candidates_for(tmp_path, constants=({"norm.g": 0.0}, {"norm.g": 1.0}), config={"depth": 2})
    record(None, dict(APART, defaults_changed={"layers.softclamp_value": [50.0, None]}))
    first = found.rule(CELL)[0]
    record(first, APART)
    offset = [{"op": "add_constant", "key": "norm.g", "value": 1.0}]
    record(found.retries(CELL)[0], APART)
    assert found.retries(CELL)[1:] == [{"steps": offset}]  # left out, the scales moved; the plain load is known


def test_part_of_the_changed_defaults_is_not_tried_where_the_first_dropped_values(tmp_path):
    found, record = candidates_for(tmp_path, config={"depth": 2})
    record(None, dict(APART, defaults_changed=SOFTCLAMPS))
    first = found.rule(CELL)[0]
    record(first, dict(APART, rule_notes=["lossy: dropped norm.bias (norm 3.2), which is not all zeros"]))
    assert found.retries(CELL) == []
