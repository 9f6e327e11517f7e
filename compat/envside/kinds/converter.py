"""The converter kind: a library's converter from an original layout to its own (diffusers' Flux
``convert_flux_transformer_checkpoint_to_diffusers``). Per release: the model's state dict, the original layout derived
from it by compat's own rules (``compat.shared.rules``), and the converter's output, which must equal the state dict
exactly; across releases: the converter's output tensors must be identical."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from compat.envside import artifact, compare
from compat.envside.engine import NotApplicable, Produced, Recipe, building, with_traceback


class ConversionRecipe(Recipe):
    """``make_state(config)`` is the model's own state dict in this release; ``to_original`` a ``RuleSet`` taking it
    to the original layout; ``convert(original)`` the library's converter (raise ``NotApplicable`` where absent)."""

    kind = "converter"

    def __init__(self, name: str, config: Mapping[str, Any], make_state: Callable, to_original: Callable,
                 convert: Callable):
        super().__init__(name, config)
        self._make_state, self._to_original, self._convert = make_state, to_original, convert
        self._result: dict | None = None  # one conversion per release, however many producers it is compared with

    def result(self) -> dict:
        if self._result is None:
            state = building("build the model", self._make_state, self.config)
            original, _ = artifact.apply_rules(self._to_original(), state)
            converted = building("convert", self._convert, dict(original))
            self._result = {"keys": artifact.key_layout(converted, with_digest=False),
                            "digests": {k: _digest(t) for k, t in converted.items()},
                            "input_digest": _digest_all(original),
                            "self_check": compare.state_differences(state, converted)}
        return self._result

    def produce(self, folder: Path, checkpoint: str | None) -> Produced:
        return Produced(fields={"conversion": self.result()})

    def consume(self, folder: Path, manifest: dict, finding: dict, rule: dict | None) -> None:
        try:
            mine = self.result()
        except NotApplicable:
            raise
        except Exception as exc:  # noqa: BLE001 - the converter's own error, verbatim
            finding["load_error"] = f"converting: {with_traceback(exc)}"
            return
        theirs = manifest["conversion"]
        differing = sorted(k for k in set(mine["digests"]) & set(theirs["digests"])
                           if mine["digests"][k] != theirs["digests"][k])
        finding["conversion"] = {
            "self_check": mine["self_check"], "producer_self_check": theirs["self_check"],
            "same_input": mine["input_digest"] == theirs["input_digest"], "differing_outputs": differing}
        finding["keys"] = compare.diff_keys(theirs["keys"], mine["keys"])


def _digest(tensor: torch.Tensor) -> str:
    return artifact.tensor_digest(tensor.contiguous())


def _digest_all(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(f"{key}={_digest(state[key])};".encode())
    return digest.hexdigest()
