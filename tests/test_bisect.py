"""Bisection: the pure search, and a real run on x-transformers."""

import re
import subprocess
import sys

from hypothesis import given, strategies as st

from compat.bisect import expected_builds, first_change


@given(st.integers(2, 600), st.data())
def test_first_change_of_a_single_step_is_found_within_the_build_bound(count, data):
    change = data.draw(st.integers(1, count - 1))
    versions = [str(i) for i in range(count)]
    looked = []

    def verdict_of(version):
        looked.append(version)
        return "identical" if int(version) < change else "incompatible"

    position, seen = first_change(versions, verdict_of)
    assert position == change and len(set(looked)) <= expected_builds(count)


def test_bisect_finds_a_real_layout_change(cache_dir):
    result = subprocess.run([sys.executable, "-m", "compat.cli", "bisect", "x-transformers", "--recipe", "decoder",
                             "--good", "0.28.4", "--bad", "2.31.10", f"--cache-dir={cache_dir}"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # 0.28.4's checkpoint stops loading at 0.29.0 (reverted in 0.29.2) and for good at 0.33.0 (net -> ff); bisection
    # over 588 releases finds one of these real layout changes, with the keys as evidence
    found = re.search(r"first release with another verdict: (\S+) \(uploaded 20", out).group(1)
    assert found in ("0.29.0", "0.33.0") and "identical -> incompatible" in out and "missing keys: " in out
    used, bound = map(int, re.search(r"reused: (\d+) \(bound: 2 ends \+ ceil\(log2\) = (\d+)\)", out).groups())
    assert used <= bound
