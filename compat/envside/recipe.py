"""What a fixtures module imports: the recipe kinds, ``NotApplicable``, and how the worker finds a module's recipes.

A recipe is a named, deterministic way to make one model (or adapter, probe, conversion) with one release of a
library. Recipes live in ``fixtures/<library>.py`` as a ``RECIPES`` mapping of name -> an instance of a kind:

- ``StateDictRecipe``: a ``state_dict`` in one ``.safetensors`` file, loaded strictly (x-transformers);
- ``PretrainedRecipe``: ``save_pretrained`` / ``from_pretrained`` (diffusers' models);
- ``AdapterRecipe``: a peft adapter on a base model (``AdapterKind`` for another library's adapters);
- ``ProbeRecipe``: a behaviour check, one verdict per release;
- ``ConversionRecipe``: a library's converter from an original layout, held to the model's own state dict;
- ``FileRecipe``: a file format: tensors written by one release, read back by another (safetensors);
- ``TransformersRecipe``: a transformers model, ``save_pretrained`` / ``from_pretrained``, with transformers' own
  account of the load.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from compat.envside.engine import NotApplicable, Recipe, describe, unsupported
from compat.envside.kinds.adapter import AdapterKind, AdapterRecipe
from compat.envside.kinds.converter import ConversionRecipe
from compat.envside.kinds.file import FileRecipe
from compat.envside.kinds.pretrained import PretrainedRecipe
from compat.envside.kinds.probe import ProbeRecipe
from compat.envside.kinds.state_dict import StateDictRecipe
from compat.envside.kinds.transformers import TransformersRecipe

__all__ = ["AdapterKind", "AdapterRecipe", "ConversionRecipe", "FileRecipe", "NotApplicable", "PretrainedRecipe", "ProbeRecipe",
           "Recipe", "StateDictRecipe", "TransformersRecipe", "load_recipes", "unsupported"]


def load_recipes(module_path: str, user: dict | None = None) -> dict[str, Recipe]:
    """Import a fixtures module by file path and return its ``RECIPES``.

    ``user`` (``{"name", "config", "kind"}``) adds a recipe for a user's own model, built by the module's
    ``recipe_from_config(config)`` from the constructor arguments the user gave (``kind``: the checkpoint's form, said
    by a recipe the module cannot make).
    """
    module = _import(module_path)
    recipes = dict(module.RECIPES)
    if user:
        try:
            if not hasattr(module, "recipe_from_config"):
                raise NotApplicable(f"{module_path} cannot build a model from a user's config (no recipe_from_config)")
            recipes[user["name"]] = module.recipe_from_config(user["config"])
        except Exception as exc:  # noqa: BLE001 - said once, per cell, not as the worker's traceback
            recipes[user["name"]] = Unbuildable(user["name"], describe(exc), user.get("kind", "state-dict"))
    return recipes


class Unbuildable(Recipe):
    """A user's recipe the fixtures module cannot make from the user's config: every cell says why, under the kind of
    the user's checkpoint."""

    def __init__(self, name: str, reason: str, kind: str):
        super().__init__(name, {})
        self.reason, self.kind = reason, kind

    def produce(self, folder: Path, checkpoint: str | None):
        raise NotApplicable(self.reason)

    def consume(self, folder: Path, manifest: dict, finding: dict, rule: dict | None) -> None:
        raise NotApplicable(self.reason)


def _import(module_path: str):
    path = Path(module_path)
    spec = importlib.util.spec_from_file_location(f"compat_fixtures_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
