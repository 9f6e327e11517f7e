"""The base layers of a user's adapter, read from the adapter's own tensor shapes."""

from __future__ import annotations

import pytest

from compat.host.user_adapter import layers_from_shapes
from compat.shared.errors import CompatError

P = "base_model.model."


def test_lora_records_both_widths():
    shapes = {P + "encoder.layer.0.query.lora_A.weight": [4, 32], P + "encoder.layer.0.query.lora_B.weight": [48, 4]}
    assert layers_from_shapes(shapes, {"peft_type": "LORA"}) == {"encoder.layer.0.query": [32, 48]}


def test_oft_before_0_16_records_both_widths_and_block_share_says_how_many_blocks():
    shapes = {P + "fc1.oft_r": [4, 8, 8], P + "fc1.oft_s": [64, 1]}
    assert layers_from_shapes(shapes, {"r": 4}) == {"fc1": [32, 64]}
    shared = {P + "fc1.oft_r": [1, 8, 8], P + "fc1.oft_s": [64, 1]}
    assert layers_from_shapes(shared, {"r": 4, "block_share": True}) == {"fc1": [32, 64]}
    with pytest.raises(CompatError, match="block_share with r=0"):
        layers_from_shapes(shared, {"r": 0, "block_share": True})


def test_oft_from_0_16_keeps_a_packed_triangle_and_no_output_width():
    assert layers_from_shapes({P + "fc1.oft_R.weight": [4, 28]}, {"r": 4}) == {"fc1": [32, None]}  # 8 * 7 / 2
    with pytest.raises(CompatError, match="27 is not the size of a packed triangle"):
        layers_from_shapes({P + "fc1.oft_R.weight": [4, 27]}, {"r": 4})


@pytest.mark.parametrize("key, shape, message", [
    (P + "conv.lora_A.weight", [4, 3, 3, 3], "not one"),  # a Conv2d's LoRA
    (P + "classifier.weight", [2, 32], "not an adapter tensor"),  # modules_to_save
    ("model.fc1.lora_A.weight", [4, 32], "not a key of a peft adapter"),
])
def test_what_is_not_a_linear_layers_adapter_tensor_is_named(key, shape, message):
    with pytest.raises(CompatError, match=message):
        layers_from_shapes({key: shape}, {})


def test_a_pickled_adapter_is_read_only_when_allowed_and_then_as_safetensors(tmp_path):
    import json

    import torch

    from compat.host.user import user_checkpoint

    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    torch.save({P + "fc1.lora_A.weight": torch.ones(4, 32), P + "fc1.lora_B.weight": torch.ones(64, 4)},
               folder / "adapter_model.bin")
    with pytest.raises(CompatError, match="adapter_model.bin: a pickle; pass --allow-pickle"):
        user_checkpoint(folder, saved_with="0.4.0")
    read = user_checkpoint(folder, saved_with="0.4.0", allow_pickle=True)
    assert read.form == "adapter" and read.path != folder.resolve()
    assert (read.path / "adapter_model.safetensors").is_file()
    assert read.config == {"peft_type": "LORA", "layers": {"fc1": [32, 64]}}
