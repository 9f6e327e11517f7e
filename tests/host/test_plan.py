"""Planning: every pair of versions a cell (probes on the diagonal only), cells chosen by -k, shards that split the
consumer environments between them without losing or repeating a cell."""

from __future__ import annotations

import pytest

from compat.host.matrix_file import load_matrix
from compat.host.pipconfig import read_index_settings
from compat.host.plan import make_plan, parse_shard
from compat.shared.errors import CompatError

MATRIX = """libraries:
  diffusers:
    import: diffusers
    fixtures: @FIXTURES@/diffusers.py
    versions: ["0.30.0", "0.31.0", "0.32.0"]
    recipes:
      unet: {}
      cogview4-embeddings: {probe: true}
"""


@pytest.fixture
def matrix(write_matrix):
    return load_matrix(write_matrix(MATRIX))


def test_every_pair_is_a_cell_and_a_probe_only_its_own_release(matrix, cache_dir):
    plan = make_plan(matrix, cache_dir, read_index_settings())
    unet = {(c.producer, c.consumer) for c in plan.cells if c.recipe == "unet"}
    probe = {(c.producer, c.consumer) for c in plan.cells if c.recipe == "cogview4-embeddings"}
    versions = ["0.30.0", "0.31.0", "0.32.0"]
    assert unet == {(p, c) for p in versions for c in versions}
    assert probe == {(v, v) for v in versions}
    assert plan.versions("diffusers") == versions


def test_k_selects_by_glob_or_by_text(matrix, cache_dir):
    index = read_index_settings()
    by_glob = make_plan(matrix, cache_dir, index, ["diffusers/unet/*->0.32.0"])
    assert {c.id for c in by_glob.cells} == {f"diffusers/unet/{v}->0.32.0" for v in ("0.30.0", "0.31.0", "0.32.0")}
    by_text = make_plan(matrix, cache_dir, index, ["embeddings"])
    assert {c.recipe for c in by_text.cells} == {"cogview4-embeddings"} and len(by_text.cells) == 3
    either = make_plan(matrix, cache_dir, index, ["embeddings", "0.30.0->0.31.0"])
    assert len(either.cells) == 4


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_shards_split_consumer_environments_and_lose_no_cell(matrix, cache_dir, count):
    index = read_index_settings()
    whole = make_plan(matrix, cache_dir, index)
    shards = [make_plan(matrix, cache_dir, index, shard=(i, count)) for i in range(1, count + 1)]
    cells = [cell for shard in shards for cell in shard.cells]
    assert sorted(cells) == sorted(whole.cells)  # every cell once
    consumers = [{(c.library, c.consumer) for c in shard.cells} for shard in shards]
    for i, mine in enumerate(consumers):  # an environment consumes in one shard only
        for j, theirs in enumerate(consumers):
            assert i == j or not mine & theirs


@pytest.mark.parametrize("text, expected", [("1/4", (1, 4)), ("4/4", (4, 4))])
def test_parse_shard(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["0/4", "5/4", "a/b", "1", "1/0"])
def test_a_bad_shard_is_one_clear_error(text):
    with pytest.raises(CompatError, match="expected i/n"):
        parse_shard(text)
