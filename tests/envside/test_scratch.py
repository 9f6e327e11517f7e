"""Scratch folders: in memory where a file fits with room to spare, on disk otherwise."""

from pathlib import Path

import pytest

from compat.envside import scratch


@pytest.mark.skipif(not scratch.MEMORY_BACKED.is_dir(), reason="no /dev/shm on this machine")
def test_a_small_file_goes_to_memory_and_the_folder_is_removed_after():
    with scratch.scratch_folder(1 << 20) as folder:
        assert Path(folder).parent == scratch.MEMORY_BACKED
        (Path(folder) / "file").write_bytes(b"x")
    assert not Path(folder).exists()


def test_a_file_larger_than_memory_goes_to_the_default_temporary_folder():
    with scratch.scratch_folder(1 << 50) as folder:
        assert Path(folder).parent != scratch.MEMORY_BACKED and Path(folder).is_dir()


def test_without_a_memory_backed_folder_the_default_temporary_folder_is_used(monkeypatch, tmp_path):
    monkeypatch.setattr(scratch, "MEMORY_BACKED", tmp_path / "absent")
    with scratch.scratch_folder(1) as folder:
        assert Path(folder).parent != tmp_path / "absent" and Path(folder).is_dir()


def test_compat_scratch_dir_chooses_the_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("COMPAT_SCRATCH_DIR", str(tmp_path))
    with scratch.scratch_folder(1) as folder:
        assert Path(folder).parent == tmp_path
