"""Shared fixtures. Real-environment tests share one cache with the default matrix, so each release is built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from compat.host.locate import SHIPPED_MATRIX, find_cache

PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    """The default matrix's cache (``COMPAT_CACHE_DIR``, else the user's cache folder), shared with its cells."""
    return find_cache(SHIPPED_MATRIX).path


@pytest.fixture
def write_matrix(tmp_path):
    """Write a matrix file (text) into a temporary folder and return its path."""

    def write(text: str, name: str = "matrix.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text.replace("@FIXTURES@", str(PROJECT / "compat" / "fixtures"))
                        .replace("@TESTS@", str(PROJECT / "tests")))
        return path

    return write
