"""The pretrained kind: a model saved with the library's ``save_pretrained`` in one release and loaded with its
``from_pretrained`` in another (diffusers' models). The library may rename keys on load (old attention names), so a
load that succeeds is judged by what it computes; the keys saved, the keys loaded and every warning are the evidence."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from compat.envside import artifact, compare
from compat.envside.engine import (
    NotApplicable,
    Produced,
    Recipe,
    building,
    forward_evidence,
    load_evidence,
    output_evidence,
    stored_inputs,
)
from compat.envside.fill import fill_parameters


def safe_serialization(save: Callable) -> dict:
    """``safe_serialization=True`` where ``save_pretrained`` takes it (old releases default to pickles)."""
    return {"safe_serialization": True} if "safe_serialization" in inspect.signature(save).parameters else {}


class PretrainedRecipe(Recipe):
    """``make(config)`` builds the model; ``load(path)`` is the library's ``from_pretrained``."""

    kind = "pretrained"

    def __init__(self, name: str, config: Mapping[str, Any], make: Callable, load: Callable, make_inputs: Callable,
                 run: Callable):
        super().__init__(name, config, make_inputs, run)
        self._make, self._load = make, load

    def produce(self, folder: Path, checkpoint: str | None) -> Produced:
        return save_filled(self, building("build the model", self._make, self.config), folder)

    def consume(self, folder: Path, manifest: dict, finding: dict, rule: dict | None) -> None:
        building("build the model", self._make, self.config)  # a release without the class is not-applicable
        inputs = stored_inputs(folder)
        model = load_evidence(finding, lambda: self._load(str(folder / "model")))
        fresh_memory(model)
        compare_loaded(self, finding, folder, manifest, model, inputs, model.state_dict())


def save_filled(recipe: Recipe, model: torch.nn.Module, folder: Path, fields: dict | None = None) -> Produced:
    """Fill ``model`` by parameter name, run it, and save it with its library's own ``save_pretrained``."""
    fill_parameters(model)
    model.eval()
    inputs = recipe.inputs()
    outputs = recipe.forward(model, inputs)
    model.save_pretrained(str(folder / "model"), **safe_serialization(model.save_pretrained))
    if not list((folder / "model").glob("*.safetensors")):
        raise NotApplicable("this release saves models only as pickles; compat does not load pickles")
    return Produced(artifact.key_layout(model.state_dict()), inputs, outputs, fields or {})


def compare_loaded(recipe: Recipe, finding: dict, folder: Path, manifest: dict, model: torch.nn.Module,
                   inputs: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> None:
    """What a library's own loader made of a saved folder: the keys saved against the keys loaded (it may rename
    them), the tensors whose bytes changed, and the outputs."""
    finding["keys"] = compare.diff_keys(artifact.without_digests(manifest["keys"]),
                                        artifact.key_layout(state, with_digest=False))
    finding["tensors_changed_on_load"] = sorted(
        key for key, entry in manifest["keys"].items()
        if key in state and artifact.tensor_digest(state[key].contiguous()) != entry["digest"])
    model.eval()
    expected = artifact.read_tensors(folder, "outputs")
    finding["outputs"] = output_evidence(expected, forward_evidence(finding, lambda: recipe.forward(model, inputs)))


@torch.no_grad()
def fresh_memory(model: torch.nn.Module) -> None:
    """Copy loaded tensors into fresh allocations. ``from_pretrained`` may leave them in memory-mapped file pages,
    and a tensor's alignment can select another CPU kernel: the same values then give outputs 2e-5 apart. The values
    are unchanged (bitwise); only where they live is."""
    for parameter in model.parameters():
        parameter.data = parameter.data.clone()
    for module in model.modules():
        for name, buffer in list(module.named_buffers(recurse=False)):
            setattr(module, name, buffer.clone())
