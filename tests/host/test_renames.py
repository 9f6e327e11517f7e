"""Probable renames: shape-compatible, and the obvious partner first (real key layouts of x-transformers)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from compat.host.renames import probable_renames

# x-transformers 0.28.4's decoder saved vs what 1.15.0 expects (from the real artifacts): the feed-forward `net` is
# `ff` since 0.33.0, and the final norm moved into the attention layers
SAVED = {"attn_layers.layers.1.1.net.0.0.bias": [128], "attn_layers.layers.1.1.net.0.0.weight": [128, 32],
         "attn_layers.layers.1.1.net.3.bias": [32], "attn_layers.layers.1.1.net.3.weight": [32, 128],
         "attn_layers.layers.3.1.net.0.0.bias": [128], "attn_layers.layers.3.1.net.0.0.weight": [128, 32],
         "attn_layers.layers.3.1.net.3.bias": [32], "attn_layers.layers.3.1.net.3.weight": [32, 128],
         "norm.bias": [32], "norm.weight": [32]}
EXPECTED = {"attn_layers.final_norm.bias": [32], "attn_layers.final_norm.weight": [32],
            **{k.replace(".net.", ".ff."): v for k, v in SAVED.items() if ".net." in k}}


def keys(saved: dict, expected: dict) -> dict:
    return {"unexpected": sorted(saved), "missing": sorted(expected), "shapes": {**saved, **expected}}


def test_the_real_0_28_4_to_1_15_0_renames_are_all_found():
    pairs = dict(probable_renames(keys(SAVED, EXPECTED)))
    assert pairs == {**{k: k.replace(".net.", ".ff.") for k in SAVED if ".net." in k},
                     "norm.bias": "attn_layers.final_norm.bias", "norm.weight": "attn_layers.final_norm.weight"}


def test_keys_of_different_shapes_never_pair():
    """The names alone pair `net.0.weight (256, 64)` with `ff.2.weight (64, 256)`: not a rename."""
    found = keys({"layers.0.net.0.weight": [256, 64], "layers.0.0.0.bias": [64]},
                 {"layers.0.ff.2.weight": [64, 256], "layers.3.1.ff.0.0.bias": [256]})
    assert probable_renames(found) == []


def test_without_recorded_shapes_nothing_is_proposed():
    assert probable_renames({"unexpected": ["a.net.w"], "missing": ["a.ff.w"]}) == []


@given(st.dictionaries(st.from_regex(r"[a-c](\.[0-2a-c]){0,3}", fullmatch=True), st.sampled_from([[2], [3], [2, 3]]),
                       max_size=6),
       st.dictionaries(st.from_regex(r"[a-d](\.[0-3a-d]){0,3}", fullmatch=True), st.sampled_from([[2], [3], [2, 3]]),
                       max_size=6))
def test_pairs_are_one_to_one_and_shape_preserving(saved, expected):
    expected = {k: v for k, v in expected.items() if k not in saved}
    pairs = probable_renames(keys(saved, expected))
    assert len({o for o, _ in pairs}) == len(pairs) == len({n for _, n in pairs})
    assert all(saved[o] == expected[n] for o, n in pairs)
