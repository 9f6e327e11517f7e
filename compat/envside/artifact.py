"""An artifact: what a producer writes for one recipe in one environment.

Layout of an artifact folder: the checkpoint in the library's own format (``model.safetensors``, a ``model/`` or
``adapter/`` folder; the kind decides), ``inputs.safetensors``,
``outputs.safetensors`` and ``manifest.json`` (library, versions, recipe, config, and every key with shape, dtype and a
content digest). The manifest is written last and atomically: a folder without one is unfinished.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from compat.shared.dtypes import torch_dtype_table
from compat.shared.files import write_json_atomic

MANIFEST_FORMAT = 1


def tensor_digest(tensor: torch.Tensor) -> str:
    """sha256 over dtype, shape and raw bytes: equal digests mean bitwise-equal tensors."""
    tensor = tensor.detach().contiguous().cpu()
    digest = hashlib.sha256(f"{tensor.dtype}|{list(tensor.shape)}|".encode())
    if tensor.numel():
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())  # the buffer itself: no copy of 1 GB
    return digest.hexdigest()


SAFETENSORS_DTYPE = torch_dtype_table(torch)
TORCH_DTYPE = {name: dtype for dtype, name in SAFETENSORS_DTYPE.items()}


def apply_rules(rules, state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A state dict through a ``RuleSet``, by the same byte-level engine as ``compat convert``; and what it lost."""
    layout = [(key, SAFETENSORS_DTYPE[t.dtype], tuple(t.shape)) for key, t in state.items()]
    conversion = rules.apply(layout, lambda key: state[key].contiguous().reshape(-1).view(torch.uint8).numpy())
    converted = {name: tensor_from_array(array, dtype, shape)
                 for (name, dtype, shape), array in zip(conversion.layout, conversion.arrays())}
    return converted, conversion.notes


def tensor_from_array(array: np.ndarray, dtype: str, shape: tuple[int, ...]) -> torch.Tensor:
    """A tensor from the rule engine's array. An array that is a view of an input tensor (a renamed one) is copied,
    so that a converter that changes tensors in place cannot change the state dict it was converted from; an array
    the engine computed (a fused or transposed one) is taken as it is: on a virtual machine a fresh gigabyte can take
    seconds to touch."""
    flat = array.reshape(-1).view(np.uint8)
    if _borrowed(flat) or not flat.flags.writeable:
        flat = flat.copy()
    if not flat.size:
        return torch.empty(shape, dtype=TORCH_DTYPE[dtype])
    return torch.from_numpy(flat).view(TORCH_DTYPE[dtype]).reshape(shape)


def _borrowed(array: np.ndarray) -> bool:
    """Whether the array's memory belongs to something other than a numpy array (an input tensor, bytes)."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array.base is not None


def dtype_name(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def key_layout(state: dict[str, torch.Tensor], with_digest: bool = True) -> dict[str, dict]:
    layout = {}
    for key, tensor in state.items():
        entry = {"shape": list(tensor.shape), "dtype": dtype_name(tensor)}
        if with_digest:
            entry["digest"] = tensor_digest(tensor)
        layout[key] = entry
    return layout


def base_manifest(library: str, version: str, recipe: str, config: dict) -> dict:
    return {
        "format": MANIFEST_FORMAT,
        "library": library,
        "version": version,
        "recipe": recipe,
        "config": config,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def write_made(folder: Path, manifest: dict, keys: dict, inputs: dict | None, outputs: dict | None,
               fields: dict) -> dict:
    """The inputs and outputs a kind made, then the manifest (last: a folder without one is unfinished)."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = dict(manifest, status="ok", keys=keys)
    if inputs is not None:
        save_file(inputs, str(folder / "inputs.safetensors"))
    if outputs is not None:
        save_file(outputs, str(folder / "outputs.safetensors"))
        manifest["outputs"] = {name: {"shape": list(t.shape), "dtype": dtype_name(t), "digest": tensor_digest(t)}
                               for name, t in outputs.items()}
    manifest.update(fields)
    write_json_atomic(folder / "manifest.json", manifest)
    return manifest


def without_digests(keys: dict[str, dict]) -> dict[str, dict]:
    return {key: {f: v for f, v in entry.items() if f != "digest"} for key, entry in keys.items()}


def write_unbuildable(folder: Path, manifest: dict, status: str, reason: str) -> dict:
    """A producer that could not make the recipe still leaves a manifest, so consumers can say why."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = dict(manifest, status=status, reason=reason)
    write_json_atomic(folder / "manifest.json", manifest)
    return manifest


def read_manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def read_tensors(folder: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(str(folder / f"{name}.safetensors"))
