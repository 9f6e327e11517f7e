"""The runner's stage loop alone (``check_in_stages``); whole runs on real releases are in tests/integration."""

from pathlib import Path

from compat.host.runner import check_in_stages


def _stages(count: int, findings: set[Path]):
    """A search whose stage n is known once stage n-1 has findings, one candidate per stage."""
    paths = [Path(f"stage-{n}") for n in range(count)]

    def known():
        reached = next((n for n, path in enumerate(paths) if path not in findings), count)
        return [("cell", {"stage": n}, paths[n]) for n in range(min(reached + 1, count)) if paths[n] not in findings]

    return known


def test_every_stage_is_checked_however_many_there_are():
    findings: set[Path] = set()
    rounds = []

    def check(todo, first):
        rounds.append((first, [entry[2].name for entry in todo]))
        findings.update(entry[2] for entry in todo)

    checked = check_in_stages(_stages(6, findings), check)

    assert [entry[2].name for entry in checked] == [f"stage-{n}" for n in range(6)]
    assert rounds[0] == (True, ["stage-0"]) and all(first is False for first, _ in rounds[1:])
    assert len(rounds) == 6


def test_an_entry_whose_check_wrote_no_finding_is_not_checked_again():
    findings: set[Path] = set()
    rounds = []

    def check(todo, first):  # the worker failed: nothing written
        rounds.append([entry[2].name for entry in todo])

    checked = check_in_stages(_stages(3, findings), check)

    assert rounds == [["stage-0"]]
    assert len(checked) == 1


def test_nothing_known_checks_nothing():
    rounds = []
    assert check_in_stages(lambda: [], lambda todo, first: rounds.append(todo)) == []
    assert rounds == []
