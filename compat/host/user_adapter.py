"""A user's own peft adapter folder, and the base model compat verifies it on.

A user's adapter was trained on a base model compat cannot fetch (a hub model, a private one). But an adapter acts
on each layer it targets by itself, so a conversion verified on layers of the same shapes, filled away from their
initialisation, is verified for the adapter: compat builds those layers (``torch.nn.Linear``, named as in the user's
model) from the adapter's own tensor shapes. Where an adapter does not record a layer's width (peft 0.16's OFT keeps
no per-output tensor), the user gives it: ``{"layers": {"encoder.query": [in_features, out_features]}}``.
"""

from __future__ import annotations

import math
from pathlib import Path

from compat.shared.checkpoint import SafetensorsFile
from compat.shared.errors import CompatError
from compat.shared.untrusted import read_json_mapping

CONFIG_FILE, WEIGHTS_FILE, PICKLED_WEIGHTS = "adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"
PREFIX = "base_model.model."  # where peft's saved keys put the base model's modules
MARKERS = ("lora_", "oft_", "boft_")


def is_adapter_folder(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG_FILE).is_file()


def read_adapter_config(folder: Path) -> dict:
    """The adapter's saved config (untrusted JSON, checked to be a mapping with a peft type)."""
    return read_json_mapping(folder / CONFIG_FILE, "peft adapter config", "peft_type")


def base_layers(folder: Path, given: dict | None = None) -> dict[str, list[int]]:
    """Each layer the adapter in ``folder`` adapts, as ``[in_features, out_features]``, from the adapter's tensor
    shapes and its config; ``given`` (the user's ``layers``) fills in or overrides widths."""
    config = read_adapter_config(folder)
    shapes = {info.name: list(info.shape) for info in SafetensorsFile(folder / WEIGHTS_FILE)}
    found = layers_from_shapes(shapes, config)
    for path, widths in (given or {}).items():
        if not (isinstance(widths, list) and len(widths) == 2 and all(isinstance(w, int) and w > 0 for w in widths)):
            raise CompatError(f"layers.{path}: expected [in_features, out_features] (two positive integers), "
                              f"got {widths!r}")
        found[path] = list(widths)
    unknown = sorted(path for path, widths in found.items() if None in widths)
    if unknown:
        raise CompatError(f"{folder / WEIGHTS_FILE}: the adapter does not record the widths of {', '.join(unknown)} "
                          f"(peft 0.16's OFT keeps no per-output tensor); give them in --recipe-config as "
                          f'{{"layers": {{"{unknown[0]}": [in_features, out_features]}}}}')
    return found


def layers_from_shapes(shapes: dict[str, list[int]], config: dict) -> dict[str, list[int | None]]:
    """``[in_features, out_features]`` per adapted layer (None where the adapter's tensors do not say): LoRA's
    ``lora_A`` [r, in] and ``lora_B`` [out, r]; OFT's ``oft_r`` [blocks, n, n] with ``oft_s`` [out, 1] (peft
    0.14-0.15) or ``oft_R.weight`` [blocks, n(n-1)/2] (0.16 on), in = blocks x n (with ``block_share`` one block is
    stored and ``r`` says how many there are). Linear layers only: any other tensor is an error naming it."""
    layers: dict[str, list[int | None]] = {}
    for key, shape in shapes.items():
        path, tensor = _split(key)
        widths = layers.setdefault(path, [None, None])
        if tensor in ("lora_A.weight",) and len(shape) == 2:
            widths[0] = shape[1]
        elif tensor in ("lora_B.weight",) and len(shape) == 2:
            widths[1] = shape[0]
        elif tensor == "lora_B.bias" or (tensor == "oft_s" and len(shape) == 2 and shape[1] == 1):
            widths[1] = shape[0]
        elif tensor == "oft_r" and len(shape) == 3 and shape[1] == shape[2]:
            widths[0] = _blocks(shape[0], config) * shape[1]
        elif tensor == "oft_R.weight" and len(shape) == 2:
            widths[0] = _blocks(shape[0], config) * _block_size(shape[1], key)
        else:
            raise CompatError(f"{key} {shape}: compat builds the base model of a user's adapter from LoRA and OFT "
                              f"tensors of Linear layers; this is not one (give the layers in --recipe-config, or "
                              f"check the adapter against a recipe)")
    return layers


def _split(key: str) -> tuple[str, str]:
    """``base_model.model.encoder.query.lora_A.weight`` -> (``encoder.query``, ``lora_A.weight``)."""
    if not key.startswith(PREFIX):
        raise CompatError(f"{key}: not a key of a peft adapter (they start with {PREFIX!r})")
    parts = key[len(PREFIX):].split(".")
    at = next((i for i, part in enumerate(parts) if part.startswith(MARKERS)), None)
    if not at:
        raise CompatError(f"{key}: not an adapter tensor of a layer (modules_to_save and the like are not "
                          "checked on a base built from the adapter)")
    return ".".join(parts[:at]), ".".join(parts[at:])


def _blocks(stored: int, config: dict) -> int:
    if stored != 1 or not config.get("block_share"):
        return stored
    blocks = config.get("r")
    if not isinstance(blocks, int) or blocks < 1:
        raise CompatError(f"{CONFIG_FILE}: block_share with r={blocks!r}: the number of blocks is not recorded; "
                          "give the layers in --recipe-config")
    return blocks


def _block_size(packed: int, key: str) -> int:
    """n from n(n-1)/2, the packed upper triangle of an n x n skew-symmetric block."""
    n = (1 + math.isqrt(1 + 8 * packed)) // 2
    if n * (n - 1) // 2 != packed:
        raise CompatError(f"{key}: {packed} is not the size of a packed triangle n(n-1)/2")
    return n


def adapter_recipe_config(folder: Path, given: dict | None) -> dict:
    """What the peft fixtures' ``recipe_from_config`` needs: the adapter's type and its base layers (``given``: the
    user's ``--recipe-config`` or the stamp of an adapter compat wrote, whose ``layers`` fill in or override)."""
    layers = (given or {}).get("layers")
    if layers is not None and not isinstance(layers, dict):
        raise CompatError(f"layers: expected a mapping of layer paths to [in_features, out_features], got {layers!r}")
    return {"peft_type": read_adapter_config(folder)["peft_type"], "layers": base_layers(folder, layers)}
