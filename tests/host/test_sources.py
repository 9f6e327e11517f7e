"""Unreleased versions in a matrix: how they are written, named and hashed (building them: tests/integration)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from compat.host.matrix import VersionSelector
from compat.host.matrix_file import load_matrix
from compat.host.pipconfig import IndexSettings
from compat.host.sources import _label, _ref_tag, remote_commit, resolve_source, tree_digest
from compat.host.store import Store
from compat.shared.errors import MatrixError

MATRIX = """\
libraries:
  x-transformers:
    import: x_transformers
    fixtures: @FIXTURES@/x_transformers.py
    versions: [2.25.5, latest-pre, {range: ">=2.25", pre: true}, @SOURCES@]
    recipes: [decoder]
"""


def test_sources_are_read_relative_to_the_matrix(tmp_path, write_matrix):
    (tmp_path / "tree").mkdir()
    (tmp_path / "pkg-1.0-py3-none-any.whl").write_bytes(b"")
    (tmp_path / "pkg-1.0.tar.gz").write_bytes(b"")
    path = write_matrix(MATRIX.replace("@SOURCES@", "{path: tree}, {git: tree, ref: main}, "
                                       "{wheel: pkg-1.0-py3-none-any.whl}, {sdist: pkg-1.0.tar.gz}, "
                                       "{git: 'https://example.org/x.git'}"))
    selectors = load_matrix(path).libraries["x-transformers"].versions
    assert [(s.kind, s.value, s.ref) for s in selectors[3:]] == [
        ("path", str(tmp_path / "tree"), ""), ("git", str(tmp_path / "tree"), "main"),
        ("wheel", str(tmp_path / "pkg-1.0-py3-none-any.whl"), ""), ("sdist", str(tmp_path / "pkg-1.0.tar.gz"), ""),
        ("git", "https://example.org/x.git", "HEAD")]
    assert selectors[1].kind == "latest-pre" and selectors[2].pre is True


@pytest.mark.parametrize("entry, message", [
    ("{path: nowhere}", r"versions\[3\]\.path: expected a folder, got 'nowhere' \(.*nowhere does not exist\)"),
    ("{wheel: tree}", r"versions\[3\]\.wheel: expected a \.whl file, got 'tree' \(.*tree is not one\)"),
    ("{path: tree, wheel: x.whl}", r"versions\[3\]: expected one of path, git, wheel, sdist, got path and wheel"),
    ("{path: tree, ref: main}", r"versions\[3\]\.ref: unknown key 'ref'; expected one of path"),
    ("{range: '>=1', pre: 'yes'}", r"versions\[3\]\.pre: expected true or false"),
])
def test_a_bad_source_entry_names_its_field(tmp_path, write_matrix, entry, message):
    (tmp_path / "tree").mkdir()
    with pytest.raises(MatrixError, match=message):
        load_matrix(write_matrix(MATRIX.replace("@SOURCES@", entry)))


def test_names_are_local_versions_that_sort_after_their_release_and_stay_in_its_ranges():
    assert _label("2.25.5", "worktree") == "2.25.5+worktree"
    assert _label("0.1.dev3+g3f2a1c9", "wheel") == "0.1.dev3+g3f2a1c9.wheel"
    assert _ref_tag("main", "3f2a1c9deadbeef") == "main.3f2a1c9"
    assert _ref_tag("feature/New-API", "3f2a1c9deadbeef") == "feature.new.api.3f2a1c9"
    assert _ref_tag("3f2a1c9dead", "3f2a1c9deadbeef") == _ref_tag("HEAD", "3f2a1c9deadbeef") == "git.3f2a1c9"
    for name in ("2.25.5+worktree", "2.25.5+main.3f2a1c9", "0.1.dev3+g3f2a1c9.wheel"):
        Version(name)  # a valid version: grids sort it, known-break ranges apply to it
    assert Version("2.25.4") < Version("2.25.5") < Version("2.25.5+worktree") < Version("2.25.6")
    assert SpecifierSet(">=2.0").contains("2.25.5+worktree")


def test_a_trees_digest_follows_its_files_not_its_caches(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    first = tree_digest(tmp_path)
    for noise in (".git/HEAD", "pkg/__pycache__/a.cpython-311.pyc", "build/lib/a.py", "pkg.egg-info/PKG-INFO",
                  ".compat/envs/x", "tests/artifacts/.compat-artifacts", "tests/artifacts/lib/1.0/r/manifest.json"):
        (tmp_path / noise).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / noise).write_text("noise")
    assert tree_digest(tmp_path) == first
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    assert tree_digest(tmp_path) != first
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "pkg" / "b.py").write_text("")
    assert tree_digest(tmp_path) != first


def git_repository(folder):
    """A real repository with one commit on main, tagged v1 (annotated), and a second commit."""
    git = ["git", "-C", str(folder), "-c", "user.name=compat", "-c", "user.email=compat@example.org"]
    subprocess.run(["git", "init", "--quiet", "--initial-branch", "main", str(folder)], check=True)
    commits = []
    for text in ("one", "two"):
        (folder / "a.txt").write_text(text)
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "--quiet", "-m", text], check=True)
        commits.append(subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                                      check=True).stdout.strip())
        if text == "one":
            subprocess.run([*git, "tag", "-a", "v1", "-m", "v1"], check=True)
    return commits


def test_the_commit_a_ref_names_is_asked_of_the_remote(tmp_path):
    one, two = git_repository(tmp_path / "repo")
    url = str(tmp_path / "repo")
    assert remote_commit(url, "main") == remote_commit(url, "HEAD") == two
    assert remote_commit(url, "v1") == one  # the commit an annotated tag points to, not the tag object
    assert remote_commit(url, one) == one
    assert remote_commit(url, one[:7]) == "" and remote_commit(url, "no-such-branch") == ""  # cloned instead
    assert remote_commit(str(tmp_path / "nowhere"), "main") == ""


def test_a_git_ref_built_before_is_taken_from_the_store_without_a_clone(tmp_path, monkeypatch):
    _, two = git_repository(tmp_path / "repo")
    store = Store(tmp_path / "cache")
    folder = store.source(f"git-{two}")
    folder.mkdir(parents=True)
    (folder / "pkg-1.0-py3-none-any.whl").write_bytes(b"")
    (folder / "source.json").write_text(json.dumps({"wheel": "pkg-1.0-py3-none-any.whl", "location": "repo@main"}))
    shim, log = tmp_path / "bin", tmp_path / "git.log"  # the real git, each subcommand logged
    shim.mkdir()
    real = subprocess.run(["which", "git"], capture_output=True, text=True, check=True).stdout.strip()
    (shim / "git").write_text(f'#!/bin/sh\necho "$1" >> {log}\nexec {real} "$@"\n')
    (shim / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}{os.pathsep}{os.environ['PATH']}")

    source = resolve_source(VersionSelector("git", str(tmp_path / "repo"), ref="main"), "pkg", store,
                            IndexSettings(), "uv")
    assert (source.version, source.commit, source.problem) == (f"1.0+main.{two[:7]}", two, "")
    assert source.wheel == str(folder / "pkg-1.0-py3-none-any.whl")
    assert log.read_text().split() == ["ls-remote"]
