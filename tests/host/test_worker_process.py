"""A worker's environment: offline, the host's Python settings left out, numpy's huge-page advice off unless set."""

from compat.host.worker_process import worker_environment


def test_a_worker_runs_offline_with_its_threads_and_without_the_host_python_settings(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    monkeypatch.setenv("VIRTUAL_ENV", "/host/venv")
    environment = worker_environment(threads=3)
    assert "PYTHONPATH" not in environment and "VIRTUAL_ENV" not in environment
    assert environment["HF_HUB_OFFLINE"] == "1" and environment["OMP_NUM_THREADS"] == "3"


def test_numpy_huge_pages_are_off_unless_the_user_asks(monkeypatch):
    monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE", raising=False)
    assert worker_environment()["NUMPY_MADVISE_HUGEPAGE"] == "0"
    monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")
    assert worker_environment()["NUMPY_MADVISE_HUGEPAGE"] == "1"
