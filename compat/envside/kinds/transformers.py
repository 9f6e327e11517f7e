"""The transformers kind: a model saved with ``save_pretrained`` in one release of transformers and loaded with
``from_pretrained`` in another, as most checkpoints people load are.

Besides what every pretrained load records (keys saved against keys loaded, warnings, outputs), it asks transformers
itself what it did (``output_loading_info``: weights it initialised at random because the checkpoint lacked them,
weights it ignored, weights whose shape did not fit), and records the config fields this release does not know, the
dtype the model was loaded in, and the attention implementation in use on both sides. A silent random
initialisation, another dtype or another attention implementation must not pass as ``identical``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from compat.envside import artifact
from compat.envside.engine import (
    NotApplicable,
    Produced,
    Recipe,
    building,
    load_evidence,
    stored_inputs,
)
from compat.envside.kinds.pretrained import compare_loaded, fresh_memory, save_filled


class TransformersRecipe(Recipe):
    """The model is ``model_class(config_class(**config))`` in this release; ``from_pretrained`` is called on
    ``model_class``. ``expect(model)`` returns the reason the release built another model than asked for (a config
    field it silently ignores, such as grouped-query attention before 4.31), which makes it not-applicable."""

    kind = "transformers"

    def __init__(self, name: str, config: Mapping[str, Any], model_class: str, make_inputs: Callable,
                 run: Callable, config_class: str, expect: Callable[[torch.nn.Module], str | None] = lambda m: None):
        super().__init__(name, config, make_inputs, run)
        self.model_class, self.config_class, self._expect = model_class, config_class, expect

    def classes(self):
        import transformers

        return building("build it", lambda: (getattr(transformers, self.config_class),
                                             getattr(transformers, self.model_class)))

    def produce(self, folder: Path, checkpoint: str | None) -> Produced:
        config_class, model_class = self.classes()
        model = building("build it", lambda: model_class(config_class(**self.config)))
        problem = self._expect(model)
        if problem:
            raise NotApplicable(f"this release built a different model: {problem}")
        return save_filled(self, model, folder, {"loaded_as": describe_model(model)})

    def consume(self, folder: Path, manifest: dict, finding: dict, rule: dict | None) -> None:
        config_class, model_class = self.classes()
        problem = self._expect(building("build it", lambda: model_class(config_class(**self.config))))
        if problem:
            raise NotApplicable(f"this release builds a different model: {problem}")
        inputs = stored_inputs(folder)
        saved_config = json.loads((folder / "model" / "config.json").read_text())
        finding["config"] = config_evidence(saved_config, config_class)
        model, info = load_evidence(finding, lambda: model_class.from_pretrained(str(folder / "model"),
                                                                                output_loading_info=True))
        finding["loaded_as"] = {"producer": manifest.get("loaded_as", {}), "consumer": describe_model(model)}
        fresh_memory(model)
        state = model.state_dict()
        saved = manifest["keys"]
        loading = {name: sorted(str(item) for item in info.get(name, []))
                   for name in ("missing_keys", "unexpected_keys", "mismatched_keys")}
        # a key transformers reports missing whose tensor is, after the load, the producer's own (a tied weight
        # it ties again) was not initialised at random
        loading["restored_keys"] = [key for key in loading["missing_keys"] if key in saved and key in state
                                    and artifact.tensor_digest(state[key].contiguous()) == saved[key]["digest"]]
        # a buffer the checkpoint lacks (rotary inv_freq) is computed by this release's constructor, not drawn at
        # random: the outputs judge it
        parameters = {name for name, _ in model.named_parameters(remove_duplicate=False)}
        loading["missing_buffers"] = [key for key in loading["missing_keys"]
                                      if key not in loading["restored_keys"] and key not in parameters]
        loading["missing_keys"] = [key for key in loading["missing_keys"]
                                   if key not in loading["restored_keys"] and key in parameters]
        finding["loading_info"] = loading
        compare_loaded(self, finding, folder, manifest, model, inputs, state)


def describe_model(model: torch.nn.Module) -> dict:
    """What a loaded model is, beyond its weights: the dtype and the attention implementation in use."""
    config = getattr(model, "config", None)
    attention = getattr(config, "_attn_implementation", None) or getattr(config, "attn_implementation", None)
    # releases before attention implementations were selectable record none: they ran the eager (math) path
    return {"dtype": str(next(model.parameters()).dtype).removeprefix("torch."), "attention": str(attention or "eager")}


def config_evidence(saved: dict, config_class) -> dict:
    """Fields the saved config.json holds that this release's config class does not know (they are ignored or kept
    as attributes without effect), and fields whose default changed since the saving release."""
    try:
        ours = config_class().to_dict()
    except Exception:  # noqa: BLE001 - a config class that needs arguments: no defaults to compare
        return {}
    ignore = {"transformers_version", "architectures", "_name_or_path", "torch_dtype", "dtype", "model_type",
              "_attn_implementation_autoset", "output_attentions"}
    return {"unknown_fields": sorted(set(saved) - set(ours) - ignore),
            "new_fields": sorted(set(ours) - set(saved) - ignore)}
