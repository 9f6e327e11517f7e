"""Constructor defaults: read from signatures, compared between releases, merged into a config."""

from compat.envside.defaults import changed_defaults, signature_defaults
from compat.shared.config import merge_config


class Layers:
    def __init__(self, dim, depth=2, norm_add_unit_offset=True, shape=(1, 2), activation=print, **kwargs):
        pass


def test_signature_defaults_keep_what_a_config_could_pass():
    assert signature_defaults(Layers, "layers.") == {"layers.depth": 2, "layers.norm_add_unit_offset": True,
                                                     "layers.shape": (1, 2)}
    assert signature_defaults(42) == {}


def test_a_default_is_changed_only_when_both_have_it_it_differs_and_the_config_leaves_it_out():
    producer = {"layers.depth": 2, "layers.norm_add_unit_offset": False, "layers.shape": [1, 2], "layers.gone": 1}
    consumer = {"layers.depth": 3, "layers.norm_add_unit_offset": True, "layers.shape": (1, 2), "layers.new": 0}
    config = {"layers": {"depth": 2}}
    assert changed_defaults(producer, consumer, config) == {"layers.norm_add_unit_offset": [False, True]}


def test_overrides_merge_into_nested_config_key_by_key():
    config = {"num_tokens": 64, "layers": {"dim": 32, "depth": 2}}
    merged = merge_config(config, {"layers": {"norm_add_unit_offset": False}, "wrapper": {"emb_dropout": 0.0}})
    assert merged == {"num_tokens": 64, "layers": {"dim": 32, "depth": 2, "norm_add_unit_offset": False},
                      "wrapper": {"emb_dropout": 0.0}}
    assert config == {"num_tokens": 64, "layers": {"dim": 32, "depth": 2}}
    assert merge_config(config, None) == config


def test_a_release_that_cannot_load_a_checkpoint_still_records_its_defaults_and_constants(tmp_path):
    """A user's checkpoint produced in a release between the one it was saved with and a target may not load there;
    that release's defaults are still the search's evidence (``search.inherited_arguments``)."""
    import torch
    from safetensors.torch import save_file

    from compat.envside.artifact import read_manifest
    from compat.envside.engine import produce_artifact
    from compat.envside.kinds.state_dict import StateDictRecipe

    def make(config):
        return torch.nn.LayerNorm(config["dim"], bias=config.get("bias", False))

    recipe = StateDictRecipe("user", {"dim": 4}, make, lambda generator: {"x": torch.randn(1, 4, generator=generator)},
                             lambda model, inputs: model(inputs["x"]),
                             defaults=lambda: signature_defaults(torch.nn.LayerNorm, "layers."))
    checkpoint = tmp_path / "saved.safetensors"
    save_file({"weight": torch.full((4,), 3.0), "bias": torch.zeros(4)}, str(checkpoint))  # a bias this model has no place for
    manifest = produce_artifact(recipe, "torch", "2.x", tmp_path / "artifact", str(checkpoint))
    assert manifest["status"] == "broken" and "Unexpected key" in manifest["reason"]
    recorded = read_manifest(tmp_path / "artifact")
    assert recorded["defaults"]["layers.eps"] == 1e-05
    assert recorded["constants"] == {"weight": 1.0}, "the fresh model's constants, not the checkpoint's"
