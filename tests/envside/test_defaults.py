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
