"""Which constructor argument builds a reshaped tensor at the producer's size."""

from __future__ import annotations

from compat.envside.sizing import sizing_arguments
from compat.shared.config import words

ROTARY = {"key": "attn_layers.rotary_pos_emb.inv_freq", "producer": [16], "consumer": [8]}


def rotary_release(arguments: dict) -> dict | None:
    """x-transformers 1.42.18's rule: rotary_emb_dim defaults to dim_head // 2 (16) and may not exceed dim_head."""
    size = arguments.get("layers.rotary_emb_dim", 16)
    if size > 32:
        return None
    return {ROTARY["key"]: [size // 2], "attn_layers.layers.0.1.to_q.weight": [32, 32]}


def test_the_argument_whose_name_shares_a_word_is_tried_at_sizes_from_the_producers_shape():
    tried = []

    def shapes_with(arguments):
        tried.append(arguments)
        return rotary_release(arguments)
    defaults = {"layers.rotary_emb_dim": None, "layers.attn_dim_head": 64, "layers.rotary_xpos": False,
                "layers.depth": None}
    found = sizing_arguments([ROTARY], defaults, {"layers": {"dim": 32}}, shapes_with)
    assert found == {ROTARY["key"]: {"path": "layers.rotary_emb_dim", "value": 32}}
    assert tried == [{"layers.rotary_emb_dim": 16}, {"layers.rotary_emb_dim": 32}]  # no flag, no unrelated name


def test_nothing_is_found_where_no_size_fits_or_the_config_sets_the_argument():
    assert sizing_arguments([ROTARY], {"layers.rotary_emb_dim": None}, {}, lambda arguments: None) == {}
    config = {"layers": {"rotary_emb_dim": 16}}
    assert sizing_arguments([ROTARY], {"layers.rotary_emb_dim": None}, config, rotary_release) == {}


def test_words_leave_out_places_and_indices():
    assert words("attn_layers.layers.0.1.to_q.weight") == {"q"}
    assert words("rotary_pos_emb.inv_freq") == {"rotary", "pos", "emb", "inv", "freq"}
