"""Recipes for models saved in the library's own format, for behaviour probes, and for a library's converters.

- ``PretrainedRecipe``: a model saved with ``save_pretrained`` in one release and loaded with ``from_pretrained`` in
  another (diffusers' models). The library may rename keys on load (old attention names), so a load that succeeds is
  judged by what it computes; the keys saved, the keys loaded and every warning are the evidence.
- ``ProbeRecipe``: a behaviour check with one verdict per release (CogView4's pipeline with embeddings of different
  lengths). Its cells have producer == consumer; the probe runs once, when the release produces.
- ``ConversionRecipe``: a library's converter from an original layout to its own. Per release: the model's state
  dict, the original layout derived from it by compat's own rules (``compat.shared.rules``), the converter's output,
  which must equal the state dict exactly; across releases: the converter's output tensors must be identical.
"""

from __future__ import annotations

import hashlib
import inspect
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from compat.envside import artifact, compare
from compat.envside.capture import captured
from compat.envside.fill import fill_parameters
from compat.envside.recipe import NotApplicable, unsupported


def safe_serialization(save: Callable) -> dict:
    """``safe_serialization=True`` where ``save_pretrained`` takes it (old releases default to pickles)."""
    return {"safe_serialization": True} if "safe_serialization" in inspect.signature(save).parameters else {}


def _building(what: str, make: Callable, *arguments):
    try:
        return make(*arguments)
    except NotApplicable:
        raise
    except Exception as exc:
        if unsupported(exc):
            raise NotApplicable(f"this release cannot {what}: {type(exc).__name__}: {exc}") from exc
        raise


class PretrainedRecipe:
    """``make(config)`` builds the model; ``load(path)`` is the library's ``from_pretrained``."""

    saves_folder = True

    def __init__(self, name: str, config: Mapping[str, Any], make: Callable, load: Callable, make_inputs: Callable,
                 run: Callable):
        self.name, self.config = name, dict(config)
        self._make, self._load, self._make_inputs, self._run = make, load, make_inputs, run

    @torch.no_grad()
    def outputs(self, model, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        return {name: t.detach().contiguous() for name, t in self._run(model, inputs).items()}

    def produce(self, folder: Path, manifest: dict) -> dict:
        model = _building("build the model", self._make, self.config)
        fill_parameters(model)
        model.eval()
        inputs = self._make_inputs(torch.Generator().manual_seed(1234))
        outputs = self.outputs(model, inputs)
        model.save_pretrained(str(folder / "model"), **safe_serialization(model.save_pretrained))
        if not list((folder / "model").glob("*.safetensors")):
            raise NotApplicable("this release saves models only as pickles; compat does not load pickles")
        from safetensors.torch import save_file

        save_file(inputs, str(folder / "inputs.safetensors"))
        save_file(outputs, str(folder / "outputs.safetensors"))
        manifest = dict(manifest, status="ok", keys=artifact.key_layout(model.state_dict()))
        artifact.write_json_atomic(folder / "manifest.json", manifest)
        return manifest

    def consume(self, folder: Path, manifest: dict) -> dict:
        _building("build the model", self._make, self.config)  # a release without the class is not-applicable
        inputs = {name: t.clone() for name, t in artifact.read_tensors(folder, "inputs").items()}
        finding: dict = {"status": "ok", "loaded_by_library": True}
        with captured() as messages:
            try:
                model = self._load(str(folder / "model"))
            except Exception as exc:  # noqa: BLE001 - the library's own refusal, verbatim
                finding["load_error"] = f"{type(exc).__name__}: {exc}\n" + traceback.format_exc(limit=-3)
        finding["load_warnings"] = messages
        if "load_error" in finding:
            return finding
        _fresh_memory(model)
        state = model.state_dict()
        saved = {k: {f: v for f, v in e.items() if f != "digest"} for k, e in manifest["keys"].items()}
        finding["keys"] = compare.diff_keys(saved, artifact.key_layout(state, with_digest=False))
        finding["tensors_changed_on_load"] = sorted(
            key for key, entry in manifest["keys"].items()
            if key in state and artifact.tensor_digest(state[key].contiguous()) != entry["digest"])
        model.eval()
        expected = artifact.read_tensors(folder, "outputs")
        try:
            actual = self.outputs(model, inputs)
        except Exception as exc:  # noqa: BLE001
            finding["forward_error"] = f"{type(exc).__name__}: {exc}"
            return finding
        finding["outputs"] = {name: compare.output_stats(t, actual[name]) if name in actual else {"missing": True}
                              for name, t in expected.items()}
        return finding


class ProbeRecipe:
    """``probe(config)`` runs the behaviour in this release and raises where the release rejects it."""

    saves_folder = True
    probe = True  # the matrix must list it with ``probe: true``: a probe's verdict belongs to one release

    def __init__(self, name: str, config: Mapping[str, Any], probe: Callable):
        self.name, self.config, self._run_probe = name, dict(config), probe

    def produce(self, folder: Path, manifest: dict) -> dict:
        with captured() as messages:
            try:
                detail = _building("run the probe", self._run_probe, self.config)
                result = {"passed": True, "detail": str(detail or "")}
            except NotApplicable:
                raise
            except Exception as exc:  # noqa: BLE001 - the release's own error is the finding
                result = {"passed": False, "error": f"{type(exc).__name__}: {exc}",
                          "traceback": traceback.format_exc(limit=-3)}
        result["warnings"] = messages
        manifest = dict(manifest, status="ok", probe=result, keys={})
        folder.mkdir(parents=True, exist_ok=True)
        artifact.write_json_atomic(folder / "manifest.json", manifest)
        return manifest

    def consume(self, folder: Path, manifest: dict) -> dict:
        return {"status": "ok", "probe": manifest["probe"]}


class ConversionRecipe:
    """``make_state(config)`` is the model's own state dict in this release; ``to_original`` a ``RuleSet`` taking it
    to the original layout; ``convert(original)`` the library's converter (raise ``NotApplicable`` where absent)."""

    saves_folder = True

    def __init__(self, name: str, config: Mapping[str, Any], make_state: Callable, to_original: Callable,
                 convert: Callable):
        self.name, self.config = name, dict(config)
        self._make_state, self._to_original, self._convert = make_state, to_original, convert
        self._result: dict | None = None  # one conversion per release, however many producers it is compared with

    def result(self) -> dict:
        if self._result is None:
            self._result = self.run()
        return self._result

    def run(self) -> dict:
        state = _building("build the model", self._make_state, self.config)
        original, _ = artifact.apply_rules(self._to_original(), state)
        converted = _building("convert", self._convert, dict(original))
        return {"keys": artifact.key_layout(converted, with_digest=False),
                "digests": {k: _digest(t) for k, t in converted.items()},
                "input_digest": _digest_all(original),
                "self_check": compare.state_differences(state, converted)}

    def produce(self, folder: Path, manifest: dict) -> dict:
        manifest = dict(manifest, status="ok", conversion=self.result(), keys={})
        folder.mkdir(parents=True, exist_ok=True)
        artifact.write_json_atomic(folder / "manifest.json", manifest)
        return manifest

    def consume(self, folder: Path, manifest: dict) -> dict:
        try:
            mine = self.result()
        except NotApplicable:
            raise
        except Exception as exc:  # noqa: BLE001 - the converter's own error, verbatim
            return {"status": "ok", "load_error": f"converting: {type(exc).__name__}: {exc}\n"
                    + traceback.format_exc(limit=-3)}
        theirs = manifest["conversion"]
        differing = sorted(k for k in set(mine["digests"]) & set(theirs["digests"])
                           if mine["digests"][k] != theirs["digests"][k])
        return {"status": "ok", "conversion": {
            "self_check": mine["self_check"], "producer_self_check": theirs["self_check"],
            "same_input": mine["input_digest"] == theirs["input_digest"], "differing_outputs": differing},
            "keys": compare.diff_keys(theirs["keys"], mine["keys"])}


@torch.no_grad()
def _fresh_memory(model: torch.nn.Module) -> None:
    """Copy loaded tensors into fresh allocations. ``from_pretrained`` may leave them in memory-mapped file pages,
    and a tensor's alignment can select another CPU kernel: the same values then give outputs 2e-5 apart. The values
    are unchanged (bitwise); only where they live is."""
    for parameter in model.parameters():
        parameter.data = parameter.data.clone()
    for module in model.modules():
        for name, buffer in list(module.named_buffers(recurse=False)):
            setattr(module, name, buffer.clone())


def _digest(tensor: torch.Tensor) -> str:
    return artifact.tensor_digest(tensor.contiguous())


def _digest_all(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(f"{key}={_digest(state[key])};".encode())
    return digest.hexdigest()
