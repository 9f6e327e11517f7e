"""The pytest face, run as a user would: pytest on a matrix file, outcomes per verdict, -k, and pytest-xdist."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from compat.api import prepare

pytest_plugins = ["pytester"]
PROJECT = Path(__file__).resolve().parent.parent.parent


def write(tmp_path: Path, known_breaks: str = "", recipes=("fine", "unsupported")) -> Path:
    fixtures = tmp_path / "recipes.py"
    fixtures.write_text((PROJECT / "tests" / "integration" / "fault_recipes.py").read_text() + f"\n# {tmp_path}\n")
    path = tmp_path / "cells.yaml"
    path.write_text(f"libraries:\n  x-transformers:\n    import: x_transformers\n    fixtures: {fixtures}\n"
                    f"    versions: ['0.29.2', '0.30.0']\n    recipes: {list(recipes)}\n{known_breaks}")
    return path


REAL_HOME = os.environ.get("HOME", "")


@pytest.fixture
def run(pytester, cache_dir, monkeypatch):
    # pytester points HOME at a temporary folder; pip's user config and uv's cache live under the real one
    monkeypatch.setenv("HOME", REAL_HOME)

    def run(path: Path, *args: str):
        # options as --name=value: a bare path argument would move pytest's rootdir
        return pytester.runpytest_subprocess(f"--compat-matrix={path}", f"--compat-cache-dir={cache_dir}",
                                             "-p", "no:cacheprovider", "-rA", *args)
    return run


def test_outcomes_follow_verdicts(run, tmp_path):
    result = run(write(tmp_path))
    result.assert_outcomes(passed=5, skipped=3, errors=0, failed=0)
    result.stdout.re_match_lines([r".*SKIPPED.*not applicable: .*unexpected keyword argument 'novel_option'.*"])


def test_known_breaks_xfail_and_stale_ones_fail(run, tmp_path):
    declared = ("    known_breaks:\n"
                "      - {producers: '==0.30.0', consumers: '==0.29.2', recipes: [fine], reason: 'declared broken'}\n")
    result = run(write(tmp_path, declared, recipes=("fine",)))
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*_ x-transformers/fine/0.30.0->0.29.2 _*",
                                 "*XPASS(strict)* known break (*cells.yaml:8; if this passes, "
                                 "remove or narrow the declaration): declared broken"])


def test_an_incompatible_cell_fails_with_its_evidence_and_a_known_break_is_xfail(run, tmp_path, cache_dir):
    fixtures = PROJECT / "compat" / "fixtures" / "x_transformers.py"
    path = tmp_path / "m.yaml"
    path.write_text(f"libraries:\n  x-transformers:\n    import: x_transformers\n    fixtures: {fixtures}\n"
                    "    versions: ['0.30.0', '0.33.0']\n    recipes: [decoder]\n    known_breaks:\n"
                    "      - {producers: '<0.33', consumers: '>=0.33', reason: 'feed-forward net renamed to ff', "
                    "link: 'https://github.com/lucidrains/x-transformers'}\n")
    result = run(path, "--compat-no-search")
    result.assert_outcomes(passed=2, failed=1, xfailed=1)
    result.stdout.fnmatch_lines(["*decoder/0.33.0->0.30.0: incompatible: 8 missing, 8 unexpected*",
                                 "*missing keys: attn_layers.layers.1.1.net.0.0.bias*"])
    selected = run(path, "-k", "decoder and 0.30.0 and not 0.33.0", "--compat-no-search")
    selected.assert_outcomes(passed=1)
    # with the conversion search (the default) both pairs convert, so the declaration is stale: it fails as such
    searched = run(path)
    searched.assert_outcomes(passed=3, failed=1)
    searched.stdout.fnmatch_lines(["*XPASS(strict)* known break (*m.yaml:*; if this passes, remove or narrow the "
                                   "declaration): feed-forward net renamed to ff"])


def test_a_bad_matrix_is_one_collection_error(run, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("libraries:\n  x-transformers:\n    import: x_transformers\n    versions: ['99.0.0']\n"
                    f"    fixtures: {PROJECT / 'compat' / 'fixtures' / 'x_transformers.py'}\n    recipes: [decoder]\n")
    result = run(path)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*{path}:4: version 99.0.0 does not exist on the registry*"])


def test_xdist_runs_every_environment_once(run, tmp_path, cache_dir):
    path = write(tmp_path)
    report = tmp_path / "report"
    result = run(path, "-n", "2", "--compat-report", str(report))
    result.assert_outcomes(passed=5, skipped=3)
    session = prepare(path, cache_dir)
    produced = [line for version in ("0.29.2", "0.30.0")
                for line in (cache_dir / "logs" / f"x-transformers-{version}.log").read_text().splitlines()
                if "compat-worker: produced" in line]
    for version in ("0.29.2", "0.30.0"):
        for recipe in ("fine", "unsupported"):
            folder = str(session.run.artifact_dir("x-transformers", version, recipe))
            assert sum(folder + ":" in line for line in produced) == 1, (version, recipe)
    # one report, as without -n: the workers' partial ones merged by the controller, each cell once
    cells = [c["id"] for c in json.loads((report / "report.json").read_text())["cells"]]
    assert sorted(cells) == sorted(set(cells)) and len(cells) == 8
    assert (report / "index.html").is_file() and not list(report.glob("partial-*"))
    result.stdout.fnmatch_lines(["*compat: report of 8 cells written to*(merged from * workers)*"])



def test_an_error_cell_is_a_test_error(run, tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(f"libraries:\n  x-transformers:\n    import: x_transformers\n"
                    f"    fixtures: {PROJECT / 'compat' / 'fixtures' / 'x_transformers.py'}\n"
                    "    versions: ['0.30.0']\n    recipes: [decoder]\n"
                    "    pins: [{versions: '==0.30.0', requirements: ['einops==0.0.0'], why: impossible on purpose}]\n")
    result = run(path)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*decoder/0.30.0->0.30.0: error: *could not be built*"])
