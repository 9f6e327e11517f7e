"""A user's own diffusers model folder (``save_pretrained``): its ``config.json`` names the class and the release
that wrote it (``_class_name``, ``_diffusers_version``), so checking it needs no arguments. The diffusers fixtures'
``recipe_from_config`` loads it with ``from_pretrained`` in each release and runs it on inputs sized from that config.
"""

from __future__ import annotations

from pathlib import Path

from compat.shared.untrusted import read_json_mapping

CONFIG_FILE = "config.json"


def is_model_folder(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG_FILE).is_file() and any(path.glob("*.safetensors"))


def read_model_config(folder: Path) -> dict:
    """The folder's ``config.json`` (untrusted JSON, checked to name a class)."""
    return read_json_mapping(folder / CONFIG_FILE, "diffusers model config", "_class_name")


def model_recipe_config(folder: Path) -> tuple[dict, str | None]:
    """The recipe config (the class and its config) and the release that saved it, if the config says."""
    config = read_model_config(folder)
    saved_with = config.get("_diffusers_version")
    return {"class": config["_class_name"], "model_config": config}, saved_with if isinstance(saved_with, str) else None


def model_files(folder: Path) -> list[Path]:
    """What a model folder is: its config, its weights and their index, if sharded."""
    return ([folder / CONFIG_FILE] + sorted(folder.glob("*.safetensors"))
            + sorted(folder.glob("*.safetensors.index.json")))
