"""What a recipe is, as the worker sees it.

A recipe is a named, deterministic way to make one model with one release of a library: build it from a small
config, check that the release built what was asked for, make inputs, run it, and save/load its weights. Recipes live
in ``fixtures/<library>.py`` as a ``RECIPES`` mapping; this module holds the shared base class.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

import torch


class NotApplicable(Exception):
    """This release cannot build the recipe (unknown keyword, missing class, or it built something else)."""


# How releases say "I do not have that": an unknown keyword, a class or module that does not exist yet.
# Any other exception while building is the release failing on a config it accepts: a broken release, not N/A.
UNSUPPORTED = ("unexpected keyword argument", "unrecognized kwargs", "cannot import name", "no module named")


def unsupported(exc: BaseException) -> bool:
    text = str(exc).lower()
    if isinstance(exc, AttributeError) and text.startswith("module "):
        return True
    return any(pattern in text for pattern in UNSUPPORTED)


class StateDictRecipe:
    """A model saved as its ``state_dict`` in one ``.safetensors`` file and loaded with ``load_state_dict``.

    ``make(config)`` builds the model with the library in the current environment; ``expect(model)`` returns
    ``None`` when the built model is the one asked for, or the reason it is not (some releases silently ignore a
    keyword they do not know, and comparing a different model under the same name would be a lie);
    ``make_inputs(generator)`` makes the forward inputs; ``run(model, inputs)`` returns named outputs.
    """

    def __init__(
        self,
        name: str,
        config: Mapping[str, Any],
        make: Callable[[Mapping[str, Any]], torch.nn.Module],
        make_inputs: Callable[[torch.Generator], dict[str, torch.Tensor]],
        run: Callable[[torch.nn.Module, dict[str, torch.Tensor]], dict[str, torch.Tensor]],
        expect: Callable[[torch.nn.Module], str | None] = lambda model: None,
    ):
        self.name, self.config = name, dict(config)
        self._make, self._make_inputs, self._run, self._expect = make, make_inputs, run, expect

    def build(self, overrides: Mapping[str, Any] | None = None) -> torch.nn.Module:
        """The model; ``overrides`` are constructor arguments a conversion rule sets for the consuming release."""
        try:
            model = self._make({**self.config, **(overrides or {})})
        except Exception as exc:
            if unsupported(exc):
                raise NotApplicable(f"this release does not support it: {type(exc).__name__}: {exc}") from exc
            raise
        problem = self._expect(model)
        if problem:
            raise NotApplicable(f"this release built a different model: {problem}")
        return model.eval()

    def inputs(self) -> dict[str, torch.Tensor]:
        return self._make_inputs(torch.Generator().manual_seed(1234))

    @torch.no_grad()
    def run(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        outputs = self._run(model, inputs)
        return {name: tensor.detach().contiguous() for name, tensor in outputs.items()}

    def state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        return {key: value.detach().clone().contiguous() for key, value in model.state_dict().items()}

    def load(self, model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
        """Strict load: raises with the library's own message when keys or shapes do not fit."""
        model.load_state_dict(state, strict=True)


def load_recipes(module_path: str, user: dict | None = None) -> dict[str, StateDictRecipe]:
    """Import a fixtures module by file path and return its ``RECIPES``.

    ``user`` (``{"name", "config"}``) adds a recipe for a user's own model, built by the module's
    ``recipe_from_config(config)`` from the constructor arguments the user gave.
    """
    module = _import(module_path)
    recipes = dict(module.RECIPES)
    if user:
        if not hasattr(module, "recipe_from_config"):
            raise NotApplicable(f"{module_path} cannot build a model from a user's config (no recipe_from_config)")
        recipes[user["name"]] = module.recipe_from_config(user["config"])
    return recipes


def _import(module_path: str):
    path = Path(module_path)
    spec = importlib.util.spec_from_file_location(f"compat_fixtures_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
