"""The search's stages of candidates: which are tried, and when they become known."""

import json
from pathlib import Path
from typing import Callable

import pytest

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


def candidates_for(tmp_path: Path) -> tuple[Candidates, Callable[[dict | None, dict], None]]:
    results = ResultIndex(tmp_path / "cache")
    for version, defaults in (("1.0.0", PRODUCER_DEFAULTS), ("2.0.0", CONSUMER_DEFAULTS)):
        folder = tmp_path / "artifacts" / version
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text(json.dumps(
            {"defaults": defaults, "config": {"rotary_pos_emb": True}, "constants": {}, "keys": {}}))

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
