"""Record, in a checkpoint's own safetensors metadata, what ``compat check`` needs to reload it later: the library,
its version and the model's constructor arguments. Standard library plus safetensors only, so it can be used in any
training environment::

    from compat.shared.stamp import save_stamped
    save_stamped(model.state_dict(), "model.safetensors", library="x-transformers", config=constructor_args)

``compat check model.safetensors --against 2.31.10`` then needs no other argument.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

from compat.shared.checkpoint import SafetensorsFile
from compat.shared.errors import CompatError
from compat.shared.untrusted import parse_json

PREFIX = "compat."


def save_stamped(tensors: dict, path: str | Path, library: str, config: dict, package: str | None = None) -> None:
    """``safetensors.torch.save_file`` with compat's metadata: library, installed version, constructor arguments."""
    from safetensors.torch import save_file

    stamp = {PREFIX + "library": library, PREFIX + "version": metadata.version(package or library),
             PREFIX + "config": json.dumps(config, sort_keys=True)}
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(path), metadata=stamp)


def read_stamp(path: str | Path) -> dict:
    """compat's metadata from a safetensors file's header (validated, no tensor read): may be empty."""
    found = SafetensorsFile(path).metadata
    stamp = {key[len(PREFIX):]: value for key, value in found.items() if key.startswith(PREFIX)}
    if "config" in stamp:
        stamp["config"] = parse_json(stamp["config"], f"{path}: compat.config in the metadata", "config")
        if not isinstance(stamp["config"], dict) or not all(isinstance(key, str) for key in stamp["config"]):
            raise CompatError(f"{path}: compat.config in the metadata must map argument names to values")
    return stamp
