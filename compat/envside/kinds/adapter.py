"""The adapter kind: a base model plus an adapter, saved by one release and loaded into the same base by another
(peft's ``PeftModel``; diffusers' ``load_lora_weights`` is the same kind with its own ``attach`` / ``save`` / ``load``).

An adapter's danger is not an exception but a load that warns and then does nothing, or something slightly different.
So the producer saves, besides the adapted output, the base model's output (the control), and moves the adapter away
from its identity initialisation, so that a dropped adapter cannot pass as a match. The consumer reports what it read
and how: config fields it does not know, defaults that changed, missing / unexpected / reshaped adapter keys, the
warnings the load emitted, its own base output and adapted output; ``adapter.applied`` is False when the loaded
adapter moves the output by less than ``NOT_APPLIED`` of what it moved it in the producer.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from compat.envside import artifact, compare
from compat.envside.defaults import constant_tensors
from compat.envside.engine import (
    Broken,
    NotApplicable,
    Produced,
    Recipe,
    building,
    forward_evidence,
    load_evidence,
    stored_inputs,
    unsupported,
)
from compat.envside.fill import fill_parameters, fill_value
from compat.envside.kinds.pretrained import safe_serialization

ADAPTER_MARKERS = ("lora_", "oft_", "boft_")
# An adapter whose effect on the output (max |adapted - base|) is below this fraction of the effect it had in the
# producer is not applied: an identity rotation still moves the last bits (1e-6 against 0.3), nothing more.
NOT_APPLIED = 1e-3


class AdapterKind(Recipe):
    """The adapter lifecycle. A library supplies ``base()``, ``attach(base)`` (the adapted model, away from identity),
    ``save(model, folder)`` (the saved adapter tensors) and ``load(base, folder)`` (the adapted model this release
    reads); optionally ``available()`` (raise ``NotApplicable``), ``saved_fields``, ``config_evidence`` and
    ``key_evidence``."""

    kind = "adapter"
    output_name = "output"

    def base(self) -> torch.nn.Module:
        raise NotImplementedError

    def attach(self, base: torch.nn.Module) -> torch.nn.Module:
        raise NotImplementedError

    def save(self, model: torch.nn.Module, folder: Path) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def load(self, base: torch.nn.Module, folder: Path) -> torch.nn.Module:
        raise NotImplementedError

    def available(self) -> None:
        """Raise ``NotApplicable`` where this release lacks the adapter type or variant."""

    def saved_fields(self, model: torch.nn.Module, folder: Path) -> dict:
        return {}

    def config_evidence(self, manifest: dict) -> dict:
        """What this release makes of the saved adapter's config, before loading it."""
        return {}

    def key_evidence(self, model: torch.nn.Module, saved: dict) -> dict:
        """The saved adapter keys (``saved``: their layout) against those this release's loaded adapter has."""
        return {}

    def output(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.forward(model, inputs)["output"]

    def produce(self, folder: Path, checkpoint: str | None) -> Produced:
        self.available()
        base = self.base()
        inputs = self.inputs()
        base_output = self.output(base, inputs)
        model = building("apply the adapter", self.attach, base)
        model.eval()
        adapted = self.output(model, inputs)
        state = self.save(model, folder)
        return Produced(artifact.key_layout(state), inputs, {self.output_name: adapted, "base": base_output},
                        dict(self.saved_fields(model, folder),
                             adapter_changes_output=not compare.bitwise_equal(adapted, base_output),
                             adapter_effect=float((adapted - base_output).abs().max())))

    def expected_layout(self, folder: Path) -> tuple[dict, dict[str, float]] | None:
        """The adapter this release would build from the saved config, before anything is loaded into it: its key
        layout and the keys it starts at one value (an identity rotation's scale at 1). None where the kind cannot
        tell; then the keys are read from the loaded adapter, and only a load that succeeds says them."""
        return None

    def with_rule(self, folder: Path, rule: dict, into: Path) -> tuple[dict, list[str]]:
        """Write the saved adapter converted by ``rule`` under ``into`` (laid out as ``folder``); return its key
        layout and what the conversion lost. Kinds that cannot convert refuse."""
        raise Broken("this adapter kind takes no conversion rule")

    def consume(self, folder: Path, manifest: dict, finding: dict, rule: dict | None) -> None:
        self.available()  # a release without this adapter type (or variant) is not-applicable, not broken
        inputs = stored_inputs(folder)
        expected = artifact.read_tensors(folder, "outputs")
        base = self.base()
        base_output = self.output(base, inputs)
        finding.update(self.config_evidence(manifest))
        with tempfile.TemporaryDirectory() as scratch:
            source, saved = folder, manifest["keys"]
            finding["rule"] = rule or None
            if rule:
                source = Path(scratch)
                saved, finding["rule_notes"] = self.with_rule(folder, rule, source)
            layout = self.expected_layout(source)
            if layout is not None:  # the keys are known before the load, so a refused load still says them
                finding["keys"] = compare.diff_keys(artifact.without_digests(saved), layout[0])
                finding["expected_constants"] = {key: value for key, value in layout[1].items()
                                                 if key in finding["keys"]["missing"]}
            model = load_evidence(finding, lambda: self.load(base, source))
            if layout is None:
                finding.update(self.key_evidence(model, saved))
        model.eval()
        output = forward_evidence(finding, lambda: self.output(model, inputs))
        finding["outputs"] = {self.output_name: compare.output_stats(expected[self.output_name], output),
                              "base": compare.output_stats(expected["base"], base_output)}
        finding["adapter"] = adapter_evidence(manifest, output, base_output)


class AdapterRecipe(AdapterKind):
    """A peft adapter. ``make_base(config)`` builds the base model (filled deterministically by parameter name);
    ``make_adapter_config(peft, config)`` builds the adapter config in this release (raise ``NotApplicable`` where the
    release lacks a field the variant needs); ``make_inputs`` and ``run`` as for state-dict recipes."""

    def __init__(self, name: str, config: Mapping[str, Any], make_base: Callable, make_adapter_config: Callable,
                 make_inputs: Callable, run: Callable):
        super().__init__(name, config, make_inputs, run)
        self._make_base, self._make_adapter_config = make_base, make_adapter_config

    def base(self) -> torch.nn.Module:
        model = building("build the base model", self._make_base, self.config)
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

    def config_class(self):
        """This release's config class for the recipe's adapter (``NotApplicable`` where it cannot make it)."""
        return type(self.adapter_config())

    def available(self) -> None:
        self.config_class()

    def attach(self, base: torch.nn.Module) -> torch.nn.Module:
        import peft

        model = peft.get_peft_model(base, self.adapter_config())
        perturb_adapter(model)
        return model

    def save(self, model: torch.nn.Module, folder: Path) -> dict[str, torch.Tensor]:
        saved = folder / "adapter"
        model.save_pretrained(str(saved), **safe_serialization(model.save_pretrained))
        weights = saved / "adapter_model.safetensors"
        if not weights.exists():
            raise NotApplicable("this release saves adapters only as pickles (adapter_model.bin); compat does not "
                                "load pickles")
        from safetensors.torch import load_file

        return load_file(str(weights))

    def saved_fields(self, model: torch.nn.Module, folder: Path) -> dict:
        return {"adapter_config": json.loads((folder / "adapter" / "adapter_config.json").read_text()),
                "config_defaults": config_defaults(self.config_class())}

    def load(self, base: torch.nn.Module, folder: Path) -> torch.nn.Module:
        import peft

        return peft.PeftModel.from_pretrained(base, str(folder / "adapter"))

    def config_evidence(self, manifest: dict) -> dict:
        import peft

        return {"config": config_evidence(manifest, peft)}

    def key_evidence(self, model, saved: dict) -> dict:
        from peft import get_peft_model_state_dict

        expected = artifact.key_layout(get_peft_model_state_dict(model), with_digest=False)
        return {"keys": compare.diff_keys(artifact.without_digests(saved), expected)}

    def expected_layout(self, folder: Path) -> tuple[dict, dict[str, float]] | None:
        """peft builds the adapter from its saved config (``get_peft_model`` on a fresh base, identity
        initialisation): the keys and shapes a load expects, and the values it starts from."""
        import peft
        from peft import get_peft_model_state_dict

        try:
            config_class = peft_config_class(peft, json.loads((folder / "adapter" / "adapter_config.json")
                                                              .read_text()).get("peft_type", ""))
            config = config_class.from_pretrained(str(folder / "adapter"))
            fresh = get_peft_model_state_dict(peft.get_peft_model(self.base(), config))
        except Exception:  # noqa: BLE001 - this release cannot build it from that config: the load will say why
            return None
        return artifact.key_layout(fresh, with_digest=False), constant_tensors(fresh)

    def with_rule(self, folder: Path, rule: dict, into: Path) -> tuple[dict, list[str]]:
        """The adapter's tensors through the rule's steps, its config with the rule's ``consumer_args`` as fields."""
        from safetensors.torch import load_file, save_file

        from compat.shared.rules import RuleSet

        rules = RuleSet.from_data(rule)
        state, notes = artifact.apply_rules(rules, load_file(str(folder / "adapter" / "adapter_model.safetensors")))
        (into / "adapter").mkdir(parents=True)
        save_file(state, str(into / "adapter" / "adapter_model.safetensors"))
        config = json.loads((folder / "adapter" / "adapter_config.json").read_text())
        (into / "adapter" / "adapter_config.json").write_text(json.dumps(dict(config, **rules.consumer_args)))
        return artifact.key_layout(state, with_digest=False), notes


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
    config_class = peft_config_class(peft, peft_type)
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
        # a new switch is read with its default from a file that never mentions it (the search may try it the
        # other way: peft 0.16.0's use_cayley_neumann, on by default, approximates what 0.15.2 computed exactly)
        "new_defaults": {name: ours[name] for name in sorted(set(ours) - set(theirs) - set(written))},
    }


def peft_config_class(peft, peft_type: str):
    """The config class of a peft type in this release (None where it has none)."""
    try:
        from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
    except ImportError:
        PEFT_TYPE_TO_CONFIG_MAPPING = getattr(peft, "PEFT_TYPE_TO_CONFIG_MAPPING", {})
    return PEFT_TYPE_TO_CONFIG_MAPPING.get(peft_type)
