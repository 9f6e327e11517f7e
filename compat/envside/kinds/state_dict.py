"""The state-dict kind: a model saved as its ``state_dict`` in one ``.safetensors`` file and loaded with
``load_state_dict``, strictly. A cell may carry a conversion rule, applied to the producer's tensors (and constructor
arguments for the consuming release) before loading: how a verified conversion is tried."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from compat.envside import artifact, compare
from compat.envside.defaults import changed_defaults, initial_constants
from compat.envside.engine import (
    Broken,
    NotApplicable,
    Produced,
    Recipe,
    building,
    describe,
    forward_evidence,
    load_evidence,
    output_evidence,
)
from compat.envside.sizing import sizing_arguments
from compat.shared.config import merge_config, nested


class StateDictRecipe(Recipe):
    """``make(config)`` builds the model with the library in the current environment; ``expect(model)`` returns
    ``None`` when the built model is the one asked for, or the reason it is not (some releases silently ignore a
    keyword they do not know, and comparing a different model under the same name would be a lie);
    ``make_inputs(generator)`` makes the forward inputs; ``run(model, inputs)`` returns named outputs;
    ``defaults()`` returns the constructor defaults the config relies on (``defaults.signature_defaults``), so that a
    consumer can say which of them its release changed.
    """

    kind = "state-dict"

    def __init__(self, name: str, config: Mapping[str, Any], make: Callable[[Mapping[str, Any]], torch.nn.Module],
                 make_inputs: Callable[[torch.Generator], dict[str, torch.Tensor]],
                 run: Callable[[torch.nn.Module, dict[str, torch.Tensor]], dict[str, torch.Tensor]],
                 expect: Callable[[torch.nn.Module], str | None] = lambda model: None,
                 defaults: Callable[[], dict[str, Any]] | None = None):
        super().__init__(name, config, make_inputs, run)
        self._make, self._expect, self._defaults = make, expect, defaults
        self._read_defaults: dict[str, Any] | None = None
        self._sized: dict[str, dict | None] = {}  # model shapes built with one argument set (``sizing``)

    def build(self, overrides: Mapping[str, Any] | None = None) -> torch.nn.Module:
        """The model; ``overrides`` are constructor arguments a conversion rule sets for the consuming release."""
        model = building("build it", self._make, merge_config(self.config, overrides))
        problem = self._expect(model)
        if problem:
            raise NotApplicable(f"this release built a different model: {problem}")
        return model.eval()

    def state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        return {key: value.detach().clone().contiguous() for key, value in model.state_dict().items()}

    def load(self, model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
        """Strict load: raises with the library's own message when keys or shapes do not fit."""
        model.load_state_dict(state, strict=True)

    def produce(self, folder: Path, checkpoint: str | None) -> Produced:
        model = self.build()
        constants = initial_constants(model)  # before any weights are put in: the release's own initialisation
        if checkpoint:  # a user's own weights, in the release they were saved with
            from safetensors.torch import load_file

            self.load(model, load_file(checkpoint))
        else:
            from compat.envside.fill import fill_parameters

            fill_parameters(model)
        inputs = self.inputs()
        outputs = self.forward(model, inputs)
        state = self.state_dict(model)
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        save_file(state, str(folder / "model.safetensors"))
        recorded = {"defaults": self.defaults(), "constants": constants}
        return Produced(artifact.key_layout(state), inputs, outputs, recorded)

    def release_evidence(self) -> dict[str, Any]:
        """The constructor defaults and the fresh model's constant tensors, read without the checkpoint."""
        try:
            constants = initial_constants(self.build())
        except Exception:  # noqa: BLE001 - evidence for the search, never a reason to fail the recipe
            constants = {}
        return {"defaults": self.defaults(), "constants": constants}

    def defaults(self) -> dict[str, Any]:
        """The constructor defaults this release gives the arguments the config leaves out ({} without ``defaults``;
        a library whose classes cannot be inspected records none rather than fail the recipe). Read once per worker:
        every consumed cell compares them."""
        if self._read_defaults is None:
            try:
                self._read_defaults = self._defaults() if self._defaults else {}
            except Exception:  # noqa: BLE001 - evidence for the search, never a reason to fail the cell
                self._read_defaults = {}
        return self._read_defaults

    def sizing(self, reshaped: list[dict]) -> dict[str, dict]:
        """``sizing.sizing_arguments`` for this release: the model is built again per argument and size tried,
        once per worker (the cells of one consumer share their producers' shapes)."""
        def shapes_with(arguments: dict) -> dict[str, list[int]] | None:
            key = json.dumps(arguments, sort_keys=True)
            if key not in self._sized:
                try:
                    built = self.build(nested(arguments)).state_dict()
                    self._sized[key] = {name: list(tensor.shape) for name, tensor in built.items()}
                except Exception:  # noqa: BLE001 - this release refuses that value: not a size it can be asked for
                    self._sized[key] = None
            return self._sized[key]
        return sizing_arguments(reshaped, self.defaults(), self.config, shapes_with)

    def consume(self, folder: Path, manifest: dict, finding: dict, rule: dict | None) -> None:
        from compat.shared.rules import RuleSet

        rules = RuleSet.from_data(rule) if rule else None
        try:
            model = self.build(rules.consumer_args if rules else None)
        except NotApplicable:
            raise
        except Exception as exc:  # noqa: BLE001 - the consuming release fails on the config
            raise Broken(f"consumer cannot build it: {describe(exc)}") from exc
        state = artifact.read_tensors(folder, "model")
        produced = manifest["keys"]
        finding["rule"] = rule or None
        if rules:  # a conversion rule: the producer's tensors as this release expects them
            state, finding["rule_notes"] = artifact.apply_rules(rules, state)
            produced = artifact.key_layout(state, with_digest=False)
        finding["keys"] = compare.diff_keys(produced, artifact.key_layout(self.state_dict(model), with_digest=False))
        if finding["keys"]["shape"] and not rules:
            finding["sizing"] = self.sizing(finding["keys"]["shape"])
        finding["defaults_changed"] = changed_defaults(manifest.get("defaults") or {}, self.defaults(), self.config)
        load_evidence(finding, lambda: self.load(model, state))
        after = self.state_dict(model)
        finding["tensors_changed_on_load"] = sorted(
            key for key, tensor in state.items() if key in after and not compare.bitwise_equal(tensor, after[key]))
        expected = artifact.read_tensors(folder, "outputs")
        actual = forward_evidence(finding, lambda: self.forward(model, artifact.read_tensors(folder, "inputs")))
        finding["outputs"] = output_evidence(expected, actual)
