"""A user's diffusers model folder: what its config.json says, and what it must say."""

from __future__ import annotations

import json
import re

import pytest

from compat.host.user import user_checkpoint
from compat.shared.errors import CompatError


def model_folder(tmp_path, config_text: str):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(config_text)
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    return folder


def test_the_class_and_the_release_come_from_the_config(tmp_path):
    config = {"_class_name": "UNet2DConditionModel", "_diffusers_version": "0.30.0", "in_channels": 4}
    read = user_checkpoint(model_folder(tmp_path, json.dumps(config)))
    assert (read.library, read.saved_with, read.form) == ("diffusers", "0.30.0", "pretrained")
    assert read.config == {"class": "UNet2DConditionModel", "model_config": config}


@pytest.mark.parametrize("text, message", [
    ("{not json", "config.json: the diffusers model config is not valid JSON"),
    ('{"in_channels": 4}', "config.json: not a diffusers model config (a mapping with a _class_name)"),
    ('{"_class_name": "UNet2DConditionModel"}', "give --saved-with"),
])
def test_a_config_that_does_not_say_enough_is_one_error_naming_the_file(tmp_path, text, message):
    with pytest.raises(CompatError, match=re.escape(message)):
        user_checkpoint(model_folder(tmp_path, text))
