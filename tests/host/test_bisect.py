"""Bisection: the pure search, and real runs on x-transformers (the recipe's checkpoint and a user's own)."""

import re
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from compat.host.bisect import change_points, expected_builds


@given(st.integers(2, 600), st.data())
def test_every_change_of_a_ladder_is_found_within_the_build_bound(count, data):
    """Verdicts that change at several releases and never come back (the usual life of a checkpoint: identical,
    then diverged, then refused) are all found, each for O(log n) more environments."""
    changes = sorted(data.draw(st.sets(st.integers(1, count - 1), min_size=1, max_size=4)))
    versions = [str(i) for i in range(count)]
    looked = []

    def verdict_of(version):
        looked.append(version)
        return f"v{sum(1 for c in changes if int(version) >= c)}"

    positions, seen = change_points(versions, verdict_of)
    assert positions == changes and len(set(looked)) <= expected_builds(count, len(changes))
    assert all(seen[v] == verdict_of(v) for v in seen)


def test_bisect_finds_a_real_layout_change(cache_dir):
    result = subprocess.run([sys.executable, "-m", "compat.cli", "bisect", "x-transformers", "--recipe", "decoder",
                             "--good", "0.30.0", "--bad", "0.33.0", f"--cache-dir={cache_dir}"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # 0.30.0's checkpoint stops loading at 0.33.0 (feed-forward `net` renamed to `ff`), with the keys as evidence
    found = re.findall(r"^  (\S+) \(uploaded 20\S+\): (\S+) -> (\S+)$", out, re.M)
    assert found == [("0.33.0", "identical", "incompatible")], out
    assert "missing keys: " in out and "probable rename: attn_layers.layers.1.1.net.0.0.bias -> " \
        "attn_layers.layers.1.1.ff.0.0.bias" in out
    used, bound = map(int, re.search(r"reused: (\d+) \(bound: (\d+)\)", out).groups())
    assert used <= bound
