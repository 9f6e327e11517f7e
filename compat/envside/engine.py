"""The lifecycle every recipe kind shares, owned once.

A kind (``compat/envside/kinds/``) supplies only what is its own: how to make the thing and save it
(``Recipe.produce``), and how to load a producer's artifact and compare (``Recipe.consume``). The engine does the rest,
the same way for every kind: the manifest (with the kind's name), writing inputs and outputs, the seeds, turning "this
release does not have it" into not-applicable and a release failing on a config it accepts into broken, the warnings a
load emits, the errors of a load or a forward pass as evidence, and the ``kind`` field every finding carries (the host
judges a finding by it; ``compat/shared/protocol.py`` lists each kind's fields).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

import torch

from compat.envside import artifact
from compat.envside.capture import captured
from compat.envside.compare import output_stats

INPUT_SEED, RUN_SEED = 1234, 0

# How releases say "I do not have that": an unknown keyword, a class or module that does not exist yet.
# Any other exception while building is the release failing on a config it accepts: a broken release, not N/A.
UNSUPPORTED = ("unexpected keyword argument", "unrecognized kwargs", "cannot import name", "no module named")


class NotApplicable(Exception):
    """This release cannot build the recipe (unknown keyword, missing class, or it built something else)."""


class Broken(Exception):
    """This release fails on a config it accepts (not 'it does not have it')."""


class Stop(Exception):
    """The finding is complete: a load or a forward pass failed, and its error is the evidence."""


def unsupported(exc: BaseException) -> bool:
    text = str(exc).lower()
    if isinstance(exc, AttributeError) and text.startswith("module "):
        return True
    return any(pattern in text for pattern in UNSUPPORTED)


def out_of_memory(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or ("alloc" in text and "memory" in text)


def describe(exc: BaseException) -> str:
    prefix = "out of memory: " if out_of_memory(exc) else ""
    return f"{prefix}{type(exc).__name__}: {exc}".strip()


def with_traceback(exc: BaseException) -> str:
    return f"{describe(exc)}\n" + traceback.format_exc(limit=-3)


def building(what: str, make: Callable, *arguments):
    """``make(*arguments)``, with a release's "I do not have that" turned into ``NotApplicable``."""
    try:
        return make(*arguments)
    except (NotApplicable, Broken):
        raise
    except Exception as exc:
        if unsupported(exc):
            raise NotApplicable(f"this release cannot {what}: {type(exc).__name__}: {exc}") from exc
        raise


@dataclass
class Produced:
    """What a kind made: the saved keys (with digests), the inputs and outputs to keep, and its own manifest fields."""
    keys: dict = field(default_factory=dict)
    inputs: dict[str, torch.Tensor] | None = None
    outputs: dict[str, torch.Tensor] | None = None
    fields: dict = field(default_factory=dict)


class Recipe:
    """The base of every kind. ``kind`` names it in manifests and findings; ``probe`` kinds have one verdict per
    release. ``make_inputs(generator)`` and ``run(model, inputs)`` are the recipe's own, where it has them."""

    kind: ClassVar[str]
    probe: ClassVar[bool] = False

    def __init__(self, name: str, config: Mapping[str, Any], make_inputs: Callable | None = None,
                 run: Callable | None = None):
        self.name, self.config = name, dict(config)
        self._make_inputs, self._run = make_inputs, run

    def produce(self, folder: Path, checkpoint: str | None) -> Produced:
        raise NotImplementedError

    def consume(self, folder: Path, manifest: dict, finding: dict, rule: dict | None) -> None:
        """Load the producer's artifact in ``folder`` with this release and add the evidence to ``finding``."""
        raise NotImplementedError

    def release_evidence(self) -> dict[str, Any]:
        """What this release records for the search even when the recipe cannot be made with it (a user's checkpoint
        that does not load there): manifest fields, by kind ({} for most)."""
        return {}

    # shared steps ------------------------------------------------------------------------------------------------
    def inputs(self) -> dict[str, torch.Tensor]:
        return self._make_inputs(torch.Generator().manual_seed(INPUT_SEED))

    @torch.no_grad()
    def forward(self, model, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        torch.manual_seed(RUN_SEED)
        outputs = self._run(model, inputs)
        if isinstance(outputs, torch.Tensor):
            outputs = {"output": outputs}
        return {name: tensor.detach().contiguous() for name, tensor in outputs.items()}


def stored_inputs(folder: Path) -> dict[str, torch.Tensor]:
    """Fresh copies of the producer's inputs: a tensor's memory alignment can pick another kernel, and change the
    last bit of an output."""
    return {name: tensor.clone() for name, tensor in artifact.read_tensors(folder, "inputs").items()}


def load_evidence(finding: dict, load: Callable):
    """``load()``, with the warnings it emits in ``load_warnings``; a refusal is ``load_error`` and ends the finding."""
    with captured() as messages:
        try:
            loaded = load()
        except Exception as exc:  # noqa: BLE001 - the library's own refusal, verbatim
            finding["load_error"] = with_traceback(exc)
            loaded = None
    finding["load_warnings"] = messages
    if "load_error" in finding:
        raise Stop
    return loaded


def forward_evidence(finding: dict, run: Callable):
    """``run()``; a forward pass that fails is ``forward_error`` and ends the finding."""
    try:
        return run()
    except Exception as exc:  # noqa: BLE001
        finding["forward_error"] = describe(exc)
        raise Stop from None


def output_evidence(expected: dict[str, torch.Tensor], actual: dict[str, torch.Tensor]) -> dict:
    return {name: output_stats(tensor, actual[name]) if name in actual else {"missing": True}
            for name, tensor in expected.items()}


# --- the lifecycle ------------------------------------------------------------------------------------------------
def produce_artifact(recipe: Recipe, library: str, version: str, folder: Path, checkpoint: str | None = None) -> dict:
    """Make ``recipe`` with this release and write its artifact; a recipe that cannot be made leaves a manifest that
    says why, so that consumers can."""
    manifest = dict(artifact.base_manifest(library, version, recipe.name, recipe.config), kind=recipe.kind)
    try:
        made = recipe.produce(folder, checkpoint)
    except NotApplicable as exc:
        return artifact.write_unbuildable(folder, manifest, "not-applicable", str(exc))
    except Exception as exc:  # noqa: BLE001 - the release fails on a config it accepts
        # still evidence: a user's checkpoint that does not load in a release between the one it was saved with and
        # a target still tells the search that release's defaults and initial constants
        return artifact.write_unbuildable(folder, dict(manifest, **recipe.release_evidence()),
                                          "error" if out_of_memory(exc) else "broken", with_traceback(exc))
    return artifact.write_made(folder, manifest, made.keys, made.inputs, made.outputs, made.fields)


def consume_artifact(recipe: Recipe, cell: dict) -> dict:
    """The finding of one cell: the producer's artifact loaded with this release."""
    finding: dict = {"kind": recipe.kind, "status": "ok"}
    if recipe.probe and cell["producer"] != cell["consumer"]:
        return dict(finding, status="error", reason=(
            f"recipe {cell['recipe']!r} is a probe, one verdict per release: list it in the matrix as "
            f"`{cell['recipe']}: {{probe: true}}` (its result in {cell['producer']} says nothing about another "
            "release)"))
    folder = Path(cell["artifact"])
    try:
        manifest = artifact.read_manifest(folder)
        if manifest["status"] != "ok":
            return dict(finding, status=manifest["status"], failed="producer",
                        reason=f"producer {cell['producer']}: {manifest.get('reason', '')}")
        recipe.consume(folder, manifest, finding, cell.get("rule"))
    except Stop:
        pass
    except NotApplicable as exc:
        return {"kind": recipe.kind, "status": "not-applicable", "reason": f"consumer: {exc}"}
    except Broken as exc:
        cause = exc.__cause__ or exc
        return {"kind": recipe.kind, "status": "error" if out_of_memory(cause) else "broken", "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - one cell's failure is that cell's error, not the worker's
        return {"kind": recipe.kind, "status": "error", "reason": f"consuming: {with_traceback(exc)}"}
    return finding
