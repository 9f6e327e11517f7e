"""Adapter recipes: a base model plus an adapter saved with the library's ``save_pretrained`` and loaded with its
``from_pretrained`` in another release (peft's ``PeftModel``).

An adapter's danger is not an exception but a load that warns and then does nothing, or something slightly different.
So the producer saves, besides the adapted output, the base model's output (the control), and perturbs the adapter
away from its identity initialisation, so that a dropped adapter cannot pass as a match. The consumer reports what it
read and how: config fields it does not know, defaults that changed, missing / unexpected / reshaped adapter keys,
the warnings the load emitted, its own base output and adapted output; ``adapter.applied`` is False when the
loaded adapter moves the output by less than ``NOT_APPLIED`` of what it moved it in the producer.
"""

from __future__ import annotations

import dataclasses
import json
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from compat.envside import artifact, compare
from compat.envside.capture import captured
from compat.envside.fill import fill_parameters, fill_value
from compat.envside.pretrained import safe_serialization
from compat.envside.recipe import NotApplicable, unsupported

ADAPTER_MARKERS = ("lora_", "oft_", "boft_")
# An adapter whose effect on the output (max |adapted - base|) is below this fraction of the effect it had in the
# producer is not applied: an identity rotation still moves the last bits (1e-6 against 0.3), nothing more.
NOT_APPLIED = 1e-3


class AdapterRecipe:
    """``make_base(config)`` builds the base model (filled deterministically by parameter name);
    ``make_adapter_config(peft, config)`` builds the adapter config in this release (raise ``NotApplicable`` where the
    release lacks a field the variant needs); ``make_inputs`` and ``run`` as for state-dict recipes."""

    saves_folder = True

    def __init__(self, name: str, config: Mapping[str, Any], make_base: Callable, make_adapter_config: Callable,
                 make_inputs: Callable, run: Callable):
        self.name, self.config = name, dict(config)
        self._make_base, self._make_adapter_config = make_base, make_adapter_config
        self._make_inputs, self._run = make_inputs, run

    # building -----------------------------------------------------------------------------------------------------
    def base(self) -> torch.nn.Module:
        try:
            model = self._make_base(self.config)
        except Exception as exc:
            if unsupported(exc):
                raise NotApplicable(f"this release cannot build the base model: {type(exc).__name__}: {exc}") from exc
            raise
        fill_parameters(model)
        return model.eval()

    def adapter_config(self):
        import peft

        try:
            return self._make_adapter_config(peft, self.config)
        except NotApplicable:
            raise
        except Exception as exc:
            if unsupported(exc) or isinstance(exc, (TypeError, ValueError)):
                raise NotApplicable(f"this release cannot make the adapter config: {type(exc).__name__}: {exc}") \
                    from exc
            raise

    def inputs(self) -> dict[str, torch.Tensor]:
        return self._make_inputs(torch.Generator().manual_seed(1234))

    @torch.no_grad()
    def output(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        torch.manual_seed(0)
        return self._run(model, inputs).detach().contiguous()

    # producing ----------------------------------------------------------------------------------------------------
    def produce(self, folder: Path, manifest: dict) -> dict:
        import peft

        base = self.base()
        config = self.adapter_config()
        inputs = self.inputs()
        base_output = self.output(base, inputs)
        try:
            model = peft.get_peft_model(base, config)
        except Exception as exc:
            if unsupported(exc):
                raise NotApplicable(f"this release cannot apply the adapter: {type(exc).__name__}: {exc}") from exc
            raise
        perturb_adapter(model)
        model.eval()
        outputs = {"output": self.output(model, inputs), "base": base_output}
        saved = folder / "adapter"
        model.save_pretrained(str(saved), **safe_serialization(model.save_pretrained))
        weights = saved / "adapter_model.safetensors"
        if not weights.exists():
            raise NotApplicable("this release saves adapters only as pickles (adapter_model.bin); compat does not "
                                "load pickles")
        from safetensors.torch import load_file, save_file

        state = load_file(str(weights))
        folder.mkdir(parents=True, exist_ok=True)
        save_file(inputs, str(folder / "inputs.safetensors"))
        save_file(outputs, str(folder / "outputs.safetensors"))
        manifest = dict(manifest, status="ok", keys=artifact.key_layout(state),
                        adapter_config=json.loads((saved / "adapter_config.json").read_text()),
                        config_defaults=config_defaults(type(config)),
                        adapter_changes_output=not compare.bitwise_equal(outputs["output"], base_output),
                        adapter_effect=float((outputs["output"] - base_output).abs().max()))
        artifact.write_json_atomic(folder / "manifest.json", manifest)
        return manifest

    # consuming ----------------------------------------------------------------------------------------------------
    def consume(self, folder: Path, manifest: dict) -> dict:
        import peft

        saved = folder / "adapter"
        self.adapter_config()  # a release without this adapter type (or variant) is not-applicable, not broken
        # fresh copies: a tensor's memory alignment can pick another matmul kernel, and change the last bit
        inputs = {name: tensor.clone() for name, tensor in artifact.read_tensors(folder, "inputs").items()}
        expected = artifact.read_tensors(folder, "outputs")
        base = self.base()
        base_output = self.output(base, inputs)
        finding: dict = {"status": "ok", "config": config_evidence(manifest, peft)}
        with captured() as messages:
            try:
                model = peft.PeftModel.from_pretrained(base, str(saved))
            except Exception as exc:  # noqa: BLE001 - the library's own refusal is the evidence
                finding["load_error"] = f"{type(exc).__name__}: {exc}\n" + traceback.format_exc(limit=-3)
                finding["load_warnings"] = messages
                return finding
        finding["load_warnings"] = messages
        finding["keys"] = self.key_evidence(model, manifest, peft)
        model.eval()
        try:
            output = self.output(model, inputs)
        except Exception as exc:  # noqa: BLE001
            finding["forward_error"] = f"{type(exc).__name__}: {exc}"
            return finding
        finding["outputs"] = {"output": compare.output_stats(expected["output"], output),
                              "base": compare.output_stats(expected["base"], base_output)}
        finding["adapter"] = adapter_evidence(manifest, output, base_output)
        return finding

    def key_evidence(self, model, manifest: dict, peft) -> dict:
        """Saved adapter keys against the keys this release's adapter has, in the form it saves them."""
        from peft import get_peft_model_state_dict

        expected = artifact.key_layout(get_peft_model_state_dict(model), with_digest=False)
        saved = {key: {k: v for k, v in entry.items() if k != "digest"} for key, entry in manifest["keys"].items()}
        return compare.diff_keys(saved, expected)


def adapter_evidence(manifest: dict, output: torch.Tensor, base_output: torch.Tensor) -> dict:
    """Whether a loaded adapter still moves the output: its effect here against the effect it had in the producer."""
    effect = float((output - base_output).abs().max())
    return {"changed_output_in_producer": manifest.get("adapter_changes_output", True),
            "effect_in_producer": manifest.get("adapter_effect"), "effect": effect,
            "applied": effect > NOT_APPLIED * manifest.get("adapter_effect", 0.0),
            "vs_own_base": compare.output_stats(base_output, output)}


def perturb_adapter(model: torch.nn.Module) -> None:
    """Move every adapter parameter away from its (identity or zero) initialisation, by name, the same in every
    release: a dropped adapter then changes the output, and cannot pass as a match."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if any(marker in name for marker in ADAPTER_MARKERS) and parameter.dtype.is_floating_point:
                parameter.add_(0.1 * fill_value(name, tuple(parameter.shape), parameter.dtype))


def config_defaults(config_class) -> dict:
    """The adapter config's fields and their defaults in this release (JSON-safe)."""
    found = {}
    for item in dataclasses.fields(config_class):
        if item.default is not dataclasses.MISSING:
            value = item.default
        elif item.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            value = item.default_factory()  # type: ignore[misc]
        else:
            continue
        found[item.name] = value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else repr(value)
    return found


def config_evidence(manifest: dict, peft) -> dict:
    """Fields the producer wrote that this release does not know, and fields whose default changed."""
    written = manifest.get("adapter_config", {})
    peft_type = written.get("peft_type", "")
    try:
        from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
    except ImportError:
        PEFT_TYPE_TO_CONFIG_MAPPING = getattr(peft, "PEFT_TYPE_TO_CONFIG_MAPPING", {})
    config_class = PEFT_TYPE_TO_CONFIG_MAPPING.get(peft_type)
    if config_class is None:
        return {"unknown_type": peft_type}
    ours = config_defaults(config_class)
    theirs = manifest.get("config_defaults", {})
    return {
        "unknown_fields": sorted(set(written) - set(ours) - {"peft_type", "auto_mapping", "base_model_name_or_path",
                                                              "revision", "task_type", "inference_mode"}),
        "new_fields": sorted(set(ours) - set(theirs)),
        "changed_defaults": {name: {"producer": theirs[name], "consumer": ours[name]}
                             for name in sorted(set(ours) & set(theirs)) if theirs[name] != ours[name]},
    }
