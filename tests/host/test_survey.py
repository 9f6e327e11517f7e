from hypothesis import given
from hypothesis import strategies as st

from compat.host.survey import describe_change, find_changes, signature


@given(st.lists(st.integers(0, 3), min_size=2, max_size=200), st.integers(1, 40))
def test_bisection_finds_every_change_of_a_monotone_history(steps, grid):
    """Layouts that never come back (each change is new) are found exactly, however coarse the first pass."""
    layout, history = 0, []
    for step in steps:
        layout += 1 if step == 0 else 0
        history.append(layout)
    versions = [f"1.{i}" for i in range(len(history))]
    probed_versions = []

    def probe(batch):
        probed_versions.extend(batch)
        return {v: (("r", "ok", str(history[versions.index(v)]), ""),) for v in batch}

    changes, probed = find_changes(versions, probe, grid)
    expected = [(versions[i - 1], versions[i]) for i in range(1, len(history)) if history[i] != history[i - 1]]
    assert [(c.before, c.after) for c in changes] == expected
    # each release is probed at most once, and the count it reports is the count it made
    assert len(probed_versions) == len(set(probed_versions)) == probed <= len(versions)


def test_signature_and_description():
    ok = {"keys": {"w": {"shape": [2], "dtype": "float32", "digest": "x"}}, "outputs": {"o": {"digest": "1"}},
          "status": "ok"}
    renamed = dict(ok, keys={"v": {"shape": [2], "dtype": "float32", "digest": "x"}})
    drift = dict(ok, outputs={"o": {"digest": "2"}})
    base = signature({"r": ok})
    assert signature({"r": dict(ok)}) == base
    assert describe_change(base, signature({"r": renamed})) == ["r: key layout changed"]
    assert describe_change(base, signature({"r": drift})) == ["r: outputs changed"]
    assert describe_change(base, signature({"r": {"status": "not-applicable"}})) == ["r: ok -> not-applicable"]
