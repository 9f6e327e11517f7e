"""The worker and the engine through the real protocol: a toy recipe kind, defined in one module, run by a worker
process in this interpreter (which has torch), driven by the host's ``WorkerProcess``. What a new kind needs on the
host side is one module with KIND, FIELDS, judge and evidence: the toy's is put beside the real ones."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from compat.host.kinds import KINDS, kind_fields
from compat.host.matrix import RecipeSpec, Tolerance
from compat.host.report import evidence_lines
from compat.host.verdicts import raw_verdict
from compat.host.worker_process import WorkerFailure, WorkerProcess
from compat.shared.protocol import check_finding

TOY_KIND = '''
"""A toy kind: a scale saved as text, loaded back, and applied to stored inputs."""
from pathlib import Path

import torch

from compat.envside import artifact
from compat.envside.engine import (NotApplicable, Produced, Recipe, forward_evidence, load_evidence,
                                   output_evidence, stored_inputs)


class ScaleRecipe(Recipe):
    kind = "scale"

    def __init__(self, name, scale, behaviour="ok"):
        super().__init__(name, {"scale": scale}, lambda g: {"x": torch.randn(4, generator=g)},
                         lambda scale, inputs: {"y": inputs["x"] * scale})
        self.behaviour = behaviour

    def produce(self, folder, checkpoint):
        if self.behaviour == "absent":
            raise NotApplicable("this release has no scales")
        if self.behaviour == "broken":
            raise ValueError("scale must be positive")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "scale.txt").write_text(str(self.config["scale"]))
        inputs = self.inputs()
        return Produced({}, inputs, self.forward(self.config["scale"], inputs), {"unit": "none"})

    def consume(self, folder, manifest, finding, rule):
        text = (folder / "scale.txt").read_text()
        scale = load_evidence(finding, lambda: float(text) * (2 if self.behaviour == "drift" else 1))
        finding["unit"] = manifest["unit"]
        inputs = stored_inputs(folder)
        actual = forward_evidence(finding, lambda: self.forward(scale, inputs))
        finding["outputs"] = output_evidence(artifact.read_tensors(folder, "outputs"), actual)


RECIPES = {"toy": ScaleRecipe("toy", 2.5), "drift": ScaleRecipe("drift", 2.5, "drift"),
           "absent": ScaleRecipe("absent", 1.0, "absent"), "broken": ScaleRecipe("broken", 1.0, "broken")}
'''


def toy_host_kind() -> types.ModuleType:
    """The host side of the toy kind: what compat/host/kinds/scale.py would hold."""
    from compat.host.kinds.common import by_outputs, refused

    module = types.ModuleType("scale")
    module.KIND = "scale"
    module.FIELDS = {"unit": (str, "the unit the producer wrote")}
    module.judge = lambda finding, recipe: refused(finding, keys_refuse=True) or by_outputs(finding, recipe)
    module.evidence = lambda finding, limit=12: [f"unit: {finding['unit']}"] if finding.get("unit") else []
    return module


@pytest.fixture
def worker(tmp_path):
    process = WorkerProcess(Path(sys.executable), "", tmp_path / "worker.log", timeout=120)
    yield process
    process.close()


def run(worker, tmp_path, recipes: list[str], cells: list[tuple[str, str, str]]) -> dict[str, dict]:
    fixtures = tmp_path / "toy.py"
    fixtures.write_text(TOY_KIND)
    events = []
    worker.send({"cmd": "produce", "library": "toy", "version": "1.0", "fixtures": str(fixtures),
                 "recipes": {name: str(tmp_path / "artifacts" / name) for name in recipes}}, "producing",
                events.append)
    assert [(e["event"], e["recipe"]) for e in events] == [("produced", name) for name in recipes]
    found = {}
    worker.send({"cmd": "consume", "fixtures": str(fixtures), "cells": [
        {"id": f"{recipe}/{producer}->{consumer}", "recipe": recipe, "producer": producer, "consumer": consumer,
         "artifact": str(tmp_path / "artifacts" / recipe), "result": str(tmp_path / "results" / f"{recipe}.json")}
        for recipe, producer, consumer in cells]}, "consuming", lambda e: found.setdefault(e["id"], e["status"]))
    return {recipe: json.loads((tmp_path / "results" / f"{recipe}.json").read_text()) for recipe, _, _ in cells}


def test_a_new_kind_runs_through_the_engine_and_is_judged_by_its_host_module(worker, tmp_path, monkeypatch):
    findings = run(worker, tmp_path, ["toy", "drift", "absent", "broken", "nothing"],
                   [("toy", "1.0", "1.0"), ("drift", "1.0", "1.0"), ("absent", "1.0", "1.0"),
                    ("broken", "1.0", "1.0"), ("nothing", "1.0", "1.0")])
    manifest = json.loads((tmp_path / "artifacts" / "toy" / "manifest.json").read_text())
    assert (manifest["kind"], manifest["status"], manifest["unit"]) == ("scale", "ok", "none")
    assert manifest["outputs"]["y"]["shape"] == [4]  # the engine wrote the outputs and their digests
    # the engine's lifecycle: not-applicable, broken (with the release's message), the producer's failure named
    assert findings["absent"]["status"] == "not-applicable" and "no scales" in findings["absent"]["reason"]
    assert findings["broken"]["status"] == "broken" and findings["broken"]["failed"] == "producer"
    assert "ValueError: scale must be positive" in findings["broken"]["reason"]
    assert findings["nothing"]["status"] == "error" and "no recipe 'nothing'" in findings["nothing"]["reason"]

    monkeypatch.setitem(KINDS, "scale", toy_host_kind())
    recipe = RecipeSpec("toy", Tolerance(1e-6, 0.0))
    for name in ("toy", "drift"):
        assert findings[name]["kind"] == "scale" and check_finding(findings[name], kind_fields()) == []
        assert findings[name]["load_warnings"] == []  # the engine captured what the load emitted
    assert raw_verdict(findings["toy"], recipe)[0] == "identical"
    assert raw_verdict(findings["drift"], recipe)[0] == "diverged"
    assert "unit: none" in evidence_lines(findings["drift"])
    # without its host module a finding of an unknown kind is an error, never a verdict
    monkeypatch.delitem(KINDS, "scale")
    assert raw_verdict(findings["toy"], recipe)[0] == "error"
    assert check_finding(findings["toy"], kind_fields())[0].startswith("kind: expected one of")


def test_a_probe_asked_across_releases_is_an_error_in_its_cell(worker, tmp_path):
    fixtures = tmp_path / "probe.py"
    fixtures.write_text("from compat.envside.recipe import ProbeRecipe\n"
                        "RECIPES = {'p': ProbeRecipe('p', {}, lambda config: 'fine')}\n")
    worker.send({"cmd": "produce", "library": "toy", "version": "1.0", "fixtures": str(fixtures),
                 "recipes": {"p": str(tmp_path / "a")}}, "producing")
    worker.send({"cmd": "consume", "fixtures": str(fixtures), "cells": [
        {"id": "x", "recipe": "p", "producer": "1.0", "consumer": "2.0", "artifact": str(tmp_path / "a"),
         "result": str(tmp_path / "across.json")},
        {"id": "y", "recipe": "p", "producer": "1.0", "consumer": "1.0", "artifact": str(tmp_path / "a"),
         "result": str(tmp_path / "own.json")}]}, "consuming")
    across, own = (json.loads((tmp_path / name).read_text()) for name in ("across.json", "own.json"))
    assert across["status"] == "error" and "probe: true" in across["reason"]
    assert own["probe"]["passed"] and own["probe"]["detail"] == "fine"


def test_a_library_that_cannot_be_imported_is_a_failed_event_naming_the_module(tmp_path):
    with pytest.raises(WorkerFailure) as failure:
        WorkerProcess(Path(sys.executable), "no_such_library_xyz", tmp_path / "w.log", timeout=60)
    assert failure.value.missing_module == "no_such_library_xyz"


def test_a_users_config_the_fixtures_cannot_make_is_one_reason_per_cell_not_a_worker_traceback(tmp_path):
    import pytest

    from compat.envside.engine import NotApplicable
    from compat.envside.recipe import load_recipes

    fixtures = tmp_path / "lib.py"
    fixtures.write_text("RECIPES = {}\n\ndef recipe_from_config(config):\n    raise KeyError('attn_layers')\n")
    recipes = load_recipes(str(fixtures), {"name": "user-1", "config": {}, "kind": "adapter"})
    assert recipes["user-1"].kind == "adapter"  # the user's checkpoint's kind, whatever the module makes
    with pytest.raises(NotApplicable, match="KeyError: 'attn_layers'"):
        recipes["user-1"].produce(tmp_path, None)
    fixtures.write_text("RECIPES = {}\n")
    with pytest.raises(NotApplicable, match="no recipe_from_config"):
        load_recipes(str(fixtures), {"name": "user-2", "config": {}})["user-2"].produce(tmp_path, None)
