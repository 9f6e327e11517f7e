"""Where a run's matrix and cache are, when the user does not say: compat is installed and run from anywhere.

The matrix: ``--matrix``, else ``compat.yaml`` or ``matrix.yaml`` in the working directory or the nearest parent up to
the project's root (the first folder holding ``.git`` or ``pyproject.toml``), else the default matrix shipped inside
the package. The cache: ``--cache-dir``, else ``COMPAT_CACHE_DIR``, else ``.compat/`` beside a project's matrix, else
(for the shipped matrix) the user's cache folder, so that an installed compat never writes into site-packages.
Every run says which in its first line (``describe``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from compat import PACKAGE_ROOT

MATRIX_NAMES = ("compat.yaml", "matrix.yaml")
SHIPPED_MATRIX = PACKAGE_ROOT / "matrix.yaml"
PROJECT_MARKERS = (".git", "pyproject.toml")
MATRIX_HELP = ("matrix file (default: compat.yaml or matrix.yaml in the working directory or a parent up to the "
               "project root, else the default matrix shipped with compat)")
CACHE_HELP = ("cache folder (default: $COMPAT_CACHE_DIR, else .compat/ beside a project's matrix, else "
              "~/.cache/compat for the shipped matrix; every run names it in its first line)")


@dataclass(frozen=True)
class Choice:
    path: Path
    why: str  # how it was chosen, for the first line of a run


def find_matrix(given: Path | str | None = None, start: Path | None = None) -> Choice:
    """The matrix a run uses (see the module's docstring)."""
    if given is not None:
        return Choice(Path(given).resolve(), "given")
    folder = (start or Path.cwd()).resolve()
    for candidate in (folder, *folder.parents):
        for name in MATRIX_NAMES:
            if (candidate / name).is_file():
                where = "the working directory" if candidate == folder else candidate
                return Choice(candidate / name, f"found in {where}")
        if any((candidate / marker).exists() for marker in PROJECT_MARKERS):
            break
    return Choice(SHIPPED_MATRIX, "the default matrix shipped with compat")


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/compat``, else ``~/.cache/compat``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return (Path(base) / "compat").resolve()


def find_cache(matrix: Path | None = None, given: Path | str | None = None) -> Choice:
    """The cache folder for a run of ``matrix`` (see the module's docstring)."""
    if given is not None:
        return Choice(Path(given).resolve(), "given")
    if os.environ.get("COMPAT_CACHE_DIR"):
        return Choice(Path(os.environ["COMPAT_CACHE_DIR"]).resolve(), "COMPAT_CACHE_DIR")
    matrix = (matrix or find_matrix().path).resolve()
    if matrix == SHIPPED_MATRIX.resolve():
        return Choice(user_cache_dir(), "the user's cache folder")
    return Choice(matrix.parent / ".compat", "beside the matrix")


def describe(matrix: Choice, cache: Choice) -> str:
    """The first line of a run: which matrix and which cache, and why."""
    return f"compat: matrix {matrix.path} ({matrix.why}); cache {cache.path} ({cache.why})"
