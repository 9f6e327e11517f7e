"""Constructor arguments that size a tensor, found by building the model again.

A release may change how it sizes a tensor without changing the argument that sizes it: x-transformers 1.42.18
stopped raising ``rotary_emb_dim`` to 32 (``max(dim_head // 2, 32)`` became ``dim_head // 2``), so a checkpoint from
1.42.17 holds a rotary ``inv_freq`` of 16 values where 1.42.18 builds 8, and both releases' signatures say ``None``.
The old size can still be asked for explicitly. For each tensor whose shape differs from the producer's, the worker
builds its model again with each argument the recipe leaves to the release whose name shares a word with the
tensor's, whose default is an integer or None, at sizes taken from the producer's shape (the size, twice it, half
of it), and records the first that gives the producer's shape. The search passes it (``consumer_args``); the outputs
decide. Runs inside release environments: standard library and torch only.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from compat.shared.config import is_set, words


def sizing_arguments(reshaped: list[dict], defaults: Mapping[str, Any], config: Mapping[str, Any],
                     shapes_with: Callable[[dict], dict[str, list[int]] | None]) -> dict[str, dict]:
    """``{key: {"path": dotted argument, "value": size}}`` for each reshaped key (``{"key", "producer",
    "consumer"}``) an argument sizes back to the producer's shape; ``shapes_with({path: value})`` builds the model
    with that argument set and returns its state dict's shapes (None where this release refuses the value)."""
    found = {}
    for change in reshaped:
        key, wanted = change["key"], list(change["producer"])
        tensor_words = words(".".join(key.split(".")[-2:]))
        for path, default in defaults.items():
            if not _sizing_default(default) or is_set(config, path) \
                    or not words(path.rsplit(".", 1)[-1]) & tensor_words:
                continue
            value = next((value for value in _sizes(wanted)
                          if (shapes_with({path: value}) or {}).get(key) == wanted), None)
            if value is not None:
                found[key] = {"path": path, "value": value}
                break
    return found


def _sizing_default(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def _sizes(shape: list[int]) -> list[int]:
    sizes: list[int] = []
    for size in shape:
        for value in (size, 2 * size, size // 2):
            if value > 0 and value not in sizes:
                sizes.append(value)
    return sizes
