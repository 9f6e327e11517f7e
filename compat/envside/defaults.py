"""Constructor defaults a recipe relies on, and which of them changed between two releases.

A recipe passes some constructor arguments and leaves the rest to the library's defaults. When a release changes a
default (x-transformers 1.31.2 turned ``norm_add_unit_offset`` on), a checkpoint from before loads without a word and
computes something else. The producer records the defaults it relied on (``signature_defaults``); the consumer
compares them with its own (``changed_defaults``); the search then passes the producer's values explicitly
(``consumer_args``, merged into the recipe's config by ``compat.shared.config.merge_config``) and the outputs decide.

Paths are dotted: ``layers.norm_add_unit_offset`` is ``config["layers"]["norm_add_unit_offset"]``. Runs inside
release environments: standard library only.
"""

from __future__ import annotations

import inspect
import json
from typing import Any, Mapping

from compat.shared.config import is_set


def signature_defaults(constructor, prefix: str = "") -> dict[str, Any]:
    """The defaults of ``constructor``'s keyword parameters that JSON can hold, each under ``prefix + name``
    (a default that is a function or a class is not something a config could pass, and is left out)."""
    try:
        parameters = inspect.signature(constructor).parameters.values()
    except (TypeError, ValueError):
        return {}
    found = {}
    for parameter in parameters:
        if parameter.default is inspect.Parameter.empty or parameter.kind in (parameter.VAR_POSITIONAL,
                                                                              parameter.VAR_KEYWORD):
            continue
        if _plain(parameter.default):
            found[prefix + parameter.name] = parameter.default
    return found


def _plain(value: Any) -> bool:
    try:
        return json.loads(json.dumps(value)) == value or isinstance(value, tuple)
    except (TypeError, ValueError):
        return False


def changed_defaults(produced: Mapping[str, Any], mine: Mapping[str, Any],
                     config: Mapping[str, Any]) -> dict[str, list]:
    """``{path: [producer's value, this release's value]}`` for every default both releases have that differs, and
    that the recipe's config does not set itself (a value the config passes is the same on both sides)."""
    changed = {}
    for path in sorted(set(produced) & set(mine)):
        theirs, ours = _json(produced[path]), _json(mine[path])
        if theirs != ours and not is_set(config, path):
            changed[path] = [theirs, ours]
    return changed


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value))  # a tuple default and its JSON list compare equal


def initial_constants(model) -> dict[str, float]:
    """The parameters a freshly built model holds at one value everywhere, by state-dict key (a norm's scale at 1, or
    at 0 where the release stores it as ``w - 1``): two releases that start the same tensor at different constants
    store it with an offset (``search.offset_steps``)."""
    return constant_tensors(dict(model.named_parameters()))


def constant_tensors(tensors) -> dict[str, float]:
    """Of named tensors, those that hold one finite value everywhere, with that value."""
    found = {}
    for name, tensor in tensors.items():
        if tensor.dtype.is_floating_point and tensor.numel():
            flat = tensor.detach().reshape(-1)
            if bool((flat == flat[0]).all()) and bool(flat[0].isfinite()):
                found[name] = float(flat[0])
    return found
