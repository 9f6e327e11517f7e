"""The results index: findings read once from the workers' per-cell files, then from one file per library."""

from __future__ import annotations

import json

from compat.host.results import INDEX, ResultIndex


def test_a_finding_read_from_its_file_is_kept_in_the_librarys_index(tmp_path):
    cell = tmp_path / "results" / "lib" / "recipe" / "abc.json"
    cell.parent.mkdir(parents=True)
    cell.write_text(json.dumps({"kind": "state-dict", "status": "ok", "outputs": {}}))
    first = ResultIndex(tmp_path)
    assert first.has("lib", cell) and first.get("lib", cell) == {"kind": "state-dict", "status": "ok", "outputs": {}}
    first.save()
    assert json.loads((tmp_path / "results" / "lib" / INDEX).read_text()) == {"recipe/abc.json": {
        "kind": "state-dict", "status": "ok", "outputs": {}}}
    cell.unlink()  # a rerun reads the index, not the file
    again = ResultIndex(tmp_path)
    assert again.has("lib", cell) and again.get("lib", cell)["status"] == "ok"


def test_an_unknown_or_cut_short_finding_is_checked_again(tmp_path):
    index = ResultIndex(tmp_path)
    missing = tmp_path / "results" / "lib" / "r" / "missing.json"
    assert not index.has("lib", missing) and index.get("lib", missing) is None
    cut = tmp_path / "results" / "lib" / "r" / "cut.json"
    cut.parent.mkdir(parents=True)
    cut.write_text('{"status": "o')
    assert index.get("lib", cut) is None and not cut.exists()


def test_two_processes_saving_keep_each_others_findings(tmp_path):
    folder = tmp_path / "results" / "lib" / "r"
    folder.mkdir(parents=True)
    for name in ("a", "b"):
        (folder / f"{name}.json").write_text(json.dumps({"kind": "probe", "status": "ok", "probe": {"passed": True}}))
    one, two = ResultIndex(tmp_path), ResultIndex(tmp_path)
    one.get("lib", folder / "a.json")
    two.get("lib", folder / "b.json")
    one.save()
    two.save()
    assert set(json.loads((tmp_path / "results" / "lib" / INDEX).read_text())) == {"r/a.json", "r/b.json"}


def test_a_finding_that_does_not_fit_the_protocol_is_an_error_naming_its_file_and_field(tmp_path):
    cell = tmp_path / "results" / "lib" / "recipe" / "bad.json"
    cell.parent.mkdir(parents=True)
    cell.write_text(json.dumps({"kind": "state-dict", "status": "ok", "outputs": "not statistics"}))
    found = ResultIndex(tmp_path).get("lib", cell)
    assert found["status"] == "error" and str(cell) in found["reason"] and "outputs: expected object" in found["reason"]
    index = ResultIndex(tmp_path)
    index.get("lib", cell)
    index.save()  # never kept in the index: it is read (and reported) again until the file is fixed
    assert not (tmp_path / "results" / "lib" / INDEX).exists()
