"""The host's handle on one worker process: spawn it, send commands, read events with a no-progress timeout.

A worker that exits, crashes or stays silent longer than its timeout raises ``WorkerFailure`` with the reason and the
tail of its stderr log; the process group is killed so nothing it started outlives it.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import resource
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from compat import PACKAGE_ROOT


def worker_pythonpath() -> Path:
    """A folder that holds only ``compat`` (a link to this package), for a worker's ``PYTHONPATH``.

    The package's parent folder will not do: in an installed compat it is the host's site-packages, and putting it on
    a release environment's path would let the host's torch or library shadow the release's own."""
    folder = Path(tempfile.gettempdir()) / f"compat-path-{hashlib.sha256(str(PACKAGE_ROOT).encode()).hexdigest()[:12]}"
    link = folder / "compat"
    if not link.is_symlink() or link.resolve() != PACKAGE_ROOT:
        folder.mkdir(parents=True, exist_ok=True)
        staging = folder / f".compat-{os.getpid()}-{threading.get_ident()}"
        staging.unlink(missing_ok=True)
        staging.symlink_to(PACKAGE_ROOT, target_is_directory=True)
        os.replace(staging, link)  # atomic: parallel runs never see a half-made link
    return folder


def worker_environment(threads: int = 1) -> dict[str, str]:
    """A worker's environment variables, without its ``PYTHONPATH``: the host's, less its Python settings, offline,
    with ``threads`` threads. ``NUMPY_MADVISE_HUGEPAGE=0`` (unless the user set it): numpy asks for huge pages on large
    arrays, and on a virtual machine whose memory is fragmented each fresh gigabyte then waits for compaction (a Flux
    conversion took 13 s instead of 3.5 s); it changes where memory comes from, not what any code computes."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL"))}
    environment.update({
        "PYTHONNOUSERSITE": "1", "COMPAT_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    if not environment.get("NUMPY_MADVISE_HUGEPAGE"):  # empty is numpy's ValueError at import
        environment["NUMPY_MADVISE_HUGEPAGE"] = "0"
    if "PYTHONDONTWRITEBYTECODE" in os.environ:
        environment["PYTHONDONTWRITEBYTECODE"] = os.environ["PYTHONDONTWRITEBYTECODE"]
    return environment


class WorkerFailure(Exception):
    """The worker is gone or could not start; ``missing_module`` names the module an import lacked, if that was it."""

    def __init__(self, message: str, missing_module: str | None = None):
        super().__init__(message)
        self.missing_module = missing_module


class WorkerProcess:
    def __init__(self, python: Path, import_name: str, log_path: Path, threads: int = 1,
                 memory_mb: int | None = None, timeout: float = 900.0):
        self.timeout, self.log_path = timeout, log_path
        self.idle_mb = 0.0  # memory this worker holds while it waits, idle, for the other producers
        environment = worker_environment(threads)
        environment.update({"PYTHONPATH": str(worker_pythonpath()), "COMPAT_IMPORT": import_name})
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(log_path, "ab")
        limit = memory_mb * 1024 * 1024 if memory_mb else None

        def limit_memory() -> None:
            if limit:
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [str(python), "-m", "compat.envside.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.log, env=environment, start_new_session=True, preexec_fn=limit_memory, text=True)
        self.events: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.ready = self.expect("ready", "starting")
        self.rss_mb = float(self.ready.get("rss_mb", 300.0))  # resident now, as of the last command
        self.peak_rss_mb = self.rss_mb  # the most this worker has held at once

    def _read(self) -> None:
        for line in self.process.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                continue
        self.events.put(None)

    def expect(self, final: str, doing: str, on_event=None) -> dict:
        """Read events until ``final``; each event resets the timeout (it measures silence, not total time)."""
        while True:
            try:
                event = self.events.get(timeout=self.timeout)
            except queue.Empty:
                self.kill()
                raise WorkerFailure(f"worker timed out: no progress for {self.timeout:.0f} s while {doing}"
                                    + self._stderr_tail()) from None
            if event is None:
                code = self.process.wait()
                raise WorkerFailure(f"worker exited while {doing}: {_exit_reason(code)}" + self._stderr_tail())
            if event.get("event") == final:
                return event
            if event.get("event") == "failed":
                self.process.wait()
                raise WorkerFailure(f"{event.get('reason')}{self._stderr_tail()}", event.get("missing_module"))
            if on_event:
                on_event(event)

    def send(self, command: dict, doing: str, on_event=None) -> dict:
        try:
            self.process.stdin.write(json.dumps(command) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            code = self.process.wait()
            raise WorkerFailure(f"worker exited before {doing}: {_exit_reason(code)}" + self._stderr_tail()) from None
        done = self.expect("done", doing, on_event)
        self.rss_mb = float(done.get("rss_mb", self.rss_mb))
        self.peak_rss_mb = max(self.peak_rss_mb, float(done.get("peak_rss_mb", self.rss_mb)))
        return done

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write('{"cmd": "exit"}\n')
                self.process.stdin.flush()
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.kill()
        self.log.close()

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()

    def _stderr_tail(self, lines: int = 15) -> str:
        self.log.flush()
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()[-lines:]
        except OSError:
            return ""
        return ("\n--- worker stderr (tail) ---\n" + "\n".join(text)) if text else ""


def _exit_reason(code: int) -> str:
    if code < 0:
        name = signal.Signals(-code).name
        hint = " (killed: out of memory?)" if -code == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exit code {code}"


# import names whose package on the registry is called something else
PACKAGE_OF_MODULE = {"yaml": "pyyaml", "PIL": "pillow", "sklearn": "scikit-learn", "cv2": "opencv-python",
                     "google.protobuf": "protobuf", "attr": "attrs", "dateutil": "python-dateutil"}


def missing_dependency_hint(library: str, version: str, module: str) -> str:
    """What to do when a release imports a module its environment lacks: the release does not declare the package
    that provides it, and the matrix can add it for that release."""
    top = module.split(".")[0]
    package = PACKAGE_OF_MODULE.get(module) or PACKAGE_OF_MODULE.get(top) or top
    return (f"{library}=={version} imports {module!r}, which it does not declare as a dependency: add under "
            f"libraries.{library} in the matrix `pins: [{{versions: \"=={version}\", requirements: [{package}], "
            f"why: \"imported but not declared\"}}]` (or widen `versions` to every release that needs it)")
