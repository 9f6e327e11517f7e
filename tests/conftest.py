"""Shared fixtures. Real-environment tests share one cache with the default matrix, so each release is built once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    return Path(os.environ.get("COMPAT_CACHE_DIR") or PROJECT / ".compat").resolve()


@pytest.fixture
def write_matrix(tmp_path):
    """Write a matrix file (text) into a temporary folder and return its path."""

    def write(text: str, name: str = "matrix.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text.replace("@FIXTURES@", str(PROJECT / "fixtures")).replace("@TESTS@", str(PROJECT / "tests")))
        return path

    return write
