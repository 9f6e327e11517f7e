"""Where the matrix and the cache are when the user does not say (compat installed and run from anywhere)."""

from __future__ import annotations

from pathlib import Path

from compat import PACKAGE_ROOT
from compat.host.locate import SHIPPED_MATRIX, describe, find_cache, find_matrix, user_cache_dir
from compat.host.worker_process import worker_pythonpath


def test_a_projects_compat_yaml_is_found_from_a_subfolder(tmp_path):
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "compat.yaml").write_text("libraries: {}\n")
    (tmp_path / "matrix.yaml").write_text("libraries: {}\n")  # compat.yaml wins in the same folder
    inner = tmp_path / "src" / "pkg"
    inner.mkdir(parents=True)
    found = find_matrix(start=inner)
    assert found.path == tmp_path / "compat.yaml" and str(tmp_path) in found.why
    assert find_matrix(start=tmp_path).why == "found in the working directory"


def test_the_search_stops_at_the_project_root_and_falls_back_to_the_shipped_matrix(tmp_path):
    (tmp_path / "matrix.yaml").write_text("libraries: {}\n")  # outside the project: not ours
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    assert find_matrix(start=project) == find_matrix(start=project)
    assert find_matrix(start=project).path == SHIPPED_MATRIX
    assert SHIPPED_MATRIX.is_file() and SHIPPED_MATRIX.parent == PACKAGE_ROOT


def test_the_cache_is_beside_a_projects_matrix_and_in_the_users_cache_for_the_shipped_one(tmp_path, monkeypatch):
    monkeypatch.delenv("COMPAT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert find_cache(tmp_path / "compat.yaml").path == tmp_path / ".compat"
    shipped = find_cache(SHIPPED_MATRIX)
    assert shipped.path == user_cache_dir() == (tmp_path / "xdg" / "compat").resolve()
    assert not shipped.path.is_relative_to(PACKAGE_ROOT.parent)  # never inside site-packages
    monkeypatch.setenv("COMPAT_CACHE_DIR", str(tmp_path / "env"))
    assert find_cache(SHIPPED_MATRIX).path == tmp_path / "env"
    assert find_cache(SHIPPED_MATRIX, given=tmp_path / "given").path == tmp_path / "given"
    line = describe(find_matrix(start=tmp_path), find_cache(SHIPPED_MATRIX))
    assert line.startswith("compat: matrix ") and "COMPAT_CACHE_DIR" in line


def test_a_workers_path_holds_compat_and_nothing_else():
    """An installed compat lives in the host's site-packages: putting that on a release environment's path would let
    the host's torch or library shadow the release's own."""
    folder = worker_pythonpath()
    assert [p.name for p in folder.iterdir() if not p.name.startswith(".")] == ["compat"]
    assert (folder / "compat").resolve() == PACKAGE_ROOT
    assert worker_pythonpath() == folder
    assert not any(Path(folder).glob("torch*"))
