import math

import torch
from hypothesis import given
from hypothesis import strategies as st

from compat.envside.compare import bitwise_equal, diff_keys, keys_match, output_stats, state_differences

names = st.text(alphabet="abcdefgh.0123", min_size=1, max_size=8)
shapes = st.lists(st.integers(1, 4), min_size=0, max_size=3)
layouts = st.dictionaries(names, st.fixed_dictionaries({"shape": shapes, "dtype": st.sampled_from(["float32", "float16"])}))


@given(layouts)
def test_a_layout_matches_itself(layout):
    assert keys_match(diff_keys(layout, layout))


@given(layouts, layouts)
def test_diff_is_symmetric_in_missing_and_unexpected(a, b):
    forward, backward = diff_keys(a, b), diff_keys(b, a)
    assert forward["missing"] == backward["unexpected"]
    assert forward["unexpected"] == backward["missing"]
    assert keys_match(forward) == keys_match(backward) == (a == b)


def test_diff_names_shape_and_dtype_changes():
    producer = {"w": {"shape": [2, 3], "dtype": "float32"}, "b": {"shape": [3], "dtype": "float32"}}
    consumer = {"w": {"shape": [3, 2], "dtype": "float32"}, "b": {"shape": [3], "dtype": "float16"},
                "g": {"shape": [3], "dtype": "float32"}}
    diff = diff_keys(producer, consumer)
    assert diff["missing"] == ["g"] and diff["unexpected"] == []
    assert diff["shape"] == [{"key": "w", "producer": [2, 3], "consumer": [3, 2]}]
    assert diff["dtype"] == [{"key": "b", "producer": "float32", "consumer": "float16"}]


def test_bitwise_equal_sees_sign_of_zero_and_nan_positions():
    assert bitwise_equal(torch.tensor([float("nan"), 1.0]), torch.tensor([float("nan"), 1.0]))
    assert not bitwise_equal(torch.tensor([0.0]), torch.tensor([-0.0]))
    assert not bitwise_equal(torch.zeros(2), torch.zeros(2, dtype=torch.float64))


@given(st.lists(st.floats(-100, 100), min_size=1, max_size=20), st.floats(-1e-3, 1e-3))
def test_output_stats_bound_the_difference(values, noise):
    expected = torch.tensor(values, dtype=torch.float64)
    actual = expected + noise
    stats = output_stats(expected, actual)
    assert stats["shape_match"]
    assert math.isclose(stats["max_abs"], abs(noise), rel_tol=1e-6, abs_tol=1e-12)
    assert stats["bitwise"] == (expected.numpy().tobytes() == actual.numpy().tobytes())
    assert -1.0 <= stats["cosine"] <= 1.0


def test_output_stats_report_swapped_halves():
    expected = torch.arange(1.0, 9.0)
    swapped = torch.cat([expected[4:], expected[:4]])
    stats = output_stats(expected, swapped)
    assert not stats["bitwise"] and stats["max_abs"] == 4.0 and stats["cosine"] < 0.9


def test_output_stats_shape_mismatch():
    stats = output_stats(torch.zeros(2, 3), torch.zeros(3, 2))
    assert stats == {"bitwise": False, "shape_match": False, "expected_shape": [2, 3], "actual_shape": [3, 2]}


def test_state_differences_names_what_is_not_bit_for_bit():
    expected = {"a": torch.ones(2), "b": torch.zeros(3), "c": torch.ones(1)}
    assert state_differences(expected, dict(expected))["exact"]
    actual = {"a": torch.tensor([1.0, 1.5]), "b": torch.zeros(4), "d": torch.ones(1)}
    found = state_differences(expected, actual)
    assert not found["exact"] and found["mismatched"] == ["a", "b", "c"]
    assert found["missing"] == ["c"] and found["unexpected"] == ["d"] and found["max_abs"] == 0.5
    assert not state_differences(expected, dict(expected, e=torch.ones(1)))["exact"]
