"""Unreleased versions in a matrix: how they are written, named and hashed (building them: tests/integration)."""

from __future__ import annotations

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from compat.host.matrix_file import load_matrix
from compat.host.sources import _label, _ref_tag, tree_digest
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
