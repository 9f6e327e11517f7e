"""Constructor arguments a conversion rule sets (``consumer_args``) merged into a recipe's or a user's config, on
either side: standard library only."""

from __future__ import annotations

import re
from typing import Any, Mapping

# words that name where something sits in a model, not what it is
PLACES = frozenset({"weight", "bias", "layers", "layer", "attn", "ff", "net", "to", "proj", "wrapper"})


def merge_config(config: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """``config`` with ``overrides`` merged in, nested mappings merged key by key (so ``{"layers": {"x": 1}}`` sets
    one argument of the layers, not all of them)."""
    merged = dict(config)
    for key, value in (overrides or {}).items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_config(merged[key], value)
        else:
            merged[key] = value
    return merged


def is_set(config: Mapping[str, Any], path: str) -> bool:
    """Whether ``config`` sets the dotted ``path`` itself (``layers.depth``: ``config["layers"]["depth"]``)."""
    *parents, name = path.split(".")
    for part in parents:
        config = config.get(part) if isinstance(config, Mapping) else None
        if config is None:
            return False
    return isinstance(config, Mapping) and name in config


def nested(values: dict) -> dict:
    """Dotted paths and values as the nested ``consumer_args`` a rule carries."""
    tree: dict = {}
    for path, value in values.items():
        *parents, name = path.split(".")
        level = tree
        for part in parents:
            level = level.setdefault(part, {})
            if not isinstance(level, dict):
                break
        else:
            level[name] = value
    return tree


def words(name: str) -> set[str]:
    """The words of a key or an argument's name (``rotary_pos_emb.inv_freq``: rotary, pos, emb, inv, freq), without
    indices and words of place: how an argument and a tensor, or two arguments, are said to be about one thing."""
    return {word for word in re.split(r"[._]", name.lower()) if word and not word.isdigit()} - PLACES
