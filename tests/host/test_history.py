"""Reports over time: baseline changes, shard merges, and reading reports back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from compat.host.history import ReportError, changes, load_report, merge

PROJECT = Path(__file__).resolve().parent.parent.parent


def report(*cells, digest="m1"):
    return {"schema": 1, "created": "t", "compat": "0", "matrix_digest": digest, "environments": {}, "stats": {},
            "host": {"python": "3.11", "torch": "2.13.0", "platform": "linux"}, "matrix": "m.yaml",
            "cells": [{"id": f"l/r/{p}->{c}", "library": "l", "recipe": "r", "producer": p, "consumer": c,
                       "verdict": v, "underlying": v, "summary": "", "evidence": {},
                       "known_break": {"reason": "r", "upstream": "undocumented", "declared_at": "m.yaml:1"}
                       if v == "known-break" else None} for p, c, v in cells]}


def test_changes_classify_reds_greens_and_new_releases():
    before = report(("1", "1", "identical"), ("1", "2", "identical"), ("2", "1", "diverged"), ("2", "2", "identical"))
    after = report(("1", "1", "identical"), ("1", "2", "incompatible"), ("2", "1", "equivalent"),
                   ("2", "2", "known-break"), ("1", "3", "identical"))
    news = changes(before, after)
    assert [(c["id"], c["kind"]) for c in news["changed"]] == [
        ("l/r/1->2", "new-red"), ("l/r/2->1", "new-green"), ("l/r/2->2", "changed")]
    assert news["new_releases"] == ["l==3"] and news["new_cells"] == ["l/r/1->3"] and news["removed_cells"] == []


def test_merge_refuses_other_matrices_and_conflicts():
    one, two = report(("1", "1", "identical")), report(("1", "2", "identical"))
    assert [c["id"] for c in merge([(Path("a"), one), (Path("b"), two)])["cells"]] == ["l/r/1->1", "l/r/1->2"]
    with pytest.raises(ReportError, match="different matrix"):
        merge([(Path("a"), one), (Path("b"), report(("1", "2", "identical"), digest="m2"))])
    with pytest.raises(ReportError, match="l/r/1->1 is diverged here but identical in a"):
        merge([(Path("a"), one), (Path("b"), report(("1", "1", "diverged")))])


def test_merge_keeps_every_reports_install_checks():
    """A shard or xdist worker that tried no release declared uninstallable must not hide another's tries."""
    tried = {"id": "l/uninstallable/0.1", "library": "l", "version": "0.1", "installs": False}
    one, two = report(("1", "1", "identical")), dict(report(("1", "2", "identical")), uninstallable=[tried])
    one["uninstallable"] = []
    assert merge([(Path("a"), one), (Path("b"), two)])["uninstallable"] == [tried]
    assert merge([(Path("a"), two), (Path("b"), two)])["uninstallable"] == [tried]


@pytest.mark.parametrize("text, message", [
    ("{", "not valid JSON"), ("[]", "no 'schema' field"), ('{"schema": 0, "cells": []}', "report schema 0"),
    ('{"schema": 1, "cells": {}}', "'cells' must be a list"), ('{"schema": 1, "cells": [{"id": 1}]}', r"compat: Field required"),
    (json.dumps(report(("1", "1", "great"))), r"cells\[0\]\.verdict: Input should be 'identical', 'equivalent'"),
    (json.dumps(report(("1", "banana", "identical"))), r"cells\[0\]\.consumer: Value error, 'banana' is not a release"),
    (json.dumps({**report(), "cells": [{**report(("1", "1", "identical"))["cells"][0], "underlying": None}]}),
     r"cells\[0\]\.underlying: Input should be 'identical'"),
    (json.dumps({**report(), "cells": [{**report(("1", "1", "identical"))["cells"][0], "evidence": {"keys": None}}]}),
     r"cells\[0\]\.evidence\.keys: Input should be a valid dictionary"),
])
def test_reading_a_corrupt_or_older_report_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "report.json"
    path.write_text(text)
    with pytest.raises(ReportError, match=message) as caught:
        load_report(path)
    assert str(path) in str(caught.value)


def compat(*args):
    result = subprocess.run([sys.executable, "-m", "compat.cli", *args], capture_output=True, text=True)
    assert result.returncode in ((0, 1) if args[0] == "run" else (0,)), result.stderr  # run: 1 for red cells
    return result


def write(tmp_path: Path, name: str, versions: list[str], extra: str = "") -> Path:
    path = tmp_path / name
    path.write_text(f"libraries:\n  x-transformers:\n    import: x_transformers\n"
                    f"    fixtures: {PROJECT / 'compat' / 'fixtures' / 'x_transformers.py'}\n"
                    f"    versions: {versions}\n    recipes:\n      glu-qknorm: {{{extra}}}\n")
    return path


def test_a_second_run_names_exactly_the_changed_cells(tmp_path, cache_dir):
    first = write(tmp_path, "first.yaml", ["0.28.4", "0.30.0"])
    second = write(tmp_path, "second.yaml", ["0.28.4", "0.30.0", "0.31.0"], "tolerance: {atol: 10.0}")
    cache = f"--cache-dir={cache_dir}"
    compat("run", "--matrix", str(first), "--out", str(tmp_path / "one"), cache)
    compat("run", "--matrix", str(second), "--out", str(tmp_path / "two"), cache,
           "--baseline", str(tmp_path / "one" / "report.json"))
    news = json.loads((tmp_path / "two" / "report.json").read_text())["changes"]
    assert [(c["id"], c["before"], c["after"], c["kind"]) for c in news["changed"]] == [
        ("x-transformers/glu-qknorm/0.28.4->0.30.0", "diverged", "equivalent", "new-green"),
        ("x-transformers/glu-qknorm/0.30.0->0.28.4", "diverged", "equivalent", "new-green")]
    assert news["new_releases"] == ["x-transformers==0.31.0"]
    assert len(news["new_cells"]) == 5 and all("0.31.0" in cell for cell in news["new_cells"])
    markdown = (tmp_path / "two" / "report.md").read_text()
    assert markdown.index("## Changes since the baseline") < markdown.index("## x-transformers / glu-qknorm")


def test_merged_shards_equal_one_unsharded_run(tmp_path, cache_dir):
    matrix = write(tmp_path, "m.yaml", ["0.28.4", "0.30.0", "0.33.0"])
    cache = f"--cache-dir={cache_dir}"
    compat("run", "--matrix", str(matrix), "--out", str(tmp_path / "whole"), cache)
    for shard in ("1/2", "2/2"):
        compat("run", "--matrix", str(matrix), "--out", str(tmp_path / shard.replace("/", "of")), cache,
               "--shard", shard)
    compat("merge", str(tmp_path / "1of2"), str(tmp_path / "2of2"), "--out", str(tmp_path / "merged"))
    whole, merged, part = (json.loads((tmp_path / name / "report.json").read_text())
                           for name in ("whole", "merged", "1of2"))
    assert 0 < len(part["cells"]) < len(whole["cells"])
    assert {c["id"]: c["verdict"] for c in merged["cells"]} == {c["id"]: c["verdict"] for c in whole["cells"]}


@pytest.mark.parametrize("command", [["pins"], ["known-breaks"], ["merge"]])
def test_every_command_that_reads_a_report_refuses_an_unknown_verdict(tmp_path, command):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report(("1", "1", "great"))))
    result = subprocess.run([sys.executable, "-m", "compat.cli", *command, str(path)], capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{path}: cells[0].verdict: Input should be" in result.stderr and "Traceback" not in result.stderr
