"""The worker: one process per release environment.

Started by the host as ``<env python> -m compat.envside.worker``. It imports torch and the library under test once,
then serves commands read as JSON lines on stdin and answers as JSON lines on its own copy of stdout (the real stdout
is pointed at stderr so that a library's prints cannot corrupt the protocol):

``produce``, ``consume`` and ``exit`` (``compat/shared/protocol.py`` defines them and the findings). The recipe's
lifecycle is the engine's (``compat/envside/engine.py``); this module only serves the protocol. A failure inside one
recipe or cell is caught and recorded in that cell; only a crash or a hang loses the process, and the host turns the
environment's unfinished cells into ``error``.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import resource
import sys
import time
from pathlib import Path

from compat.shared.protocol import COMMANDS, EVENTS


def _protocol_stream():
    stream = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return stream


PROTOCOL = _protocol_stream()


def send(event: str, **fields) -> None:
    assert event in EVENTS, event  # the protocol's events, compat/shared/protocol.py
    PROTOCOL.write(json.dumps(dict(fields, event=event)) + "\n")
    PROTOCOL.flush()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """Resident memory now: what this worker holds while it waits, idle, for the other producers."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def release_memory() -> None:
    """Hand freed memory back to the system after a command: glibc keeps some freed pages in its heap (a worker that
    produced the 1 GB Flux model idled 240 MB lower after trimming)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def serve(command: dict, recipes_for) -> None:
    """One command: produce recipes, or consume producers' artifacts, through the engine."""
    from compat.envside import artifact
    from compat.envside.engine import consume_artifact, produce_artifact

    available = recipes_for(command)
    if command["cmd"] == "produce":
        user = command.get("user") or {}
        for name, folder in command["recipes"].items():
            started = time.perf_counter()
            if name in available:
                checkpoint = user.get("checkpoint") if name == user.get("name") else None
                manifest = produce_artifact(available[name], command["library"], command["version"], Path(folder),
                                            checkpoint)
            else:
                manifest = artifact.write_unbuildable(
                    Path(folder), artifact.base_manifest(command["library"], command["version"], name, {}),
                    "error", f"{command['fixtures']} has no recipe {name!r} (it has: {', '.join(available)})")
            print(f"compat-worker: produced {folder}: {manifest['status']}", file=sys.stderr, flush=True)
            send("produced", recipe=name, status=manifest["status"], seconds=time.perf_counter() - started)
    elif command["cmd"] != "consume":
        raise ValueError(f"unknown command {command['cmd']!r}: the protocol has {', '.join(COMMANDS)}")
    else:
        for cell in command["cells"]:
            started = time.perf_counter()
            recipe = available.get(cell["recipe"])
            finding = consume_artifact(recipe, cell) if recipe else {
                "status": "error", "reason": f"{command['fixtures']} has no recipe "
                f"{cell['recipe']!r} (it has: {', '.join(available)})"}
            finding["seconds"] = time.perf_counter() - started
            artifact.write_json_atomic(Path(cell["result"]), finding)
            send("cell", id=cell["id"], status=finding["status"])


def main() -> None:
    started = time.perf_counter()
    import torch

    torch.set_num_threads(int(os.environ.get("COMPAT_THREADS", "1")))
    library_module = os.environ.get("COMPAT_IMPORT")
    if library_module:
        try:
            __import__(library_module)
        except Exception as exc:  # noqa: BLE001 - the host says what to do; a traceback alone does not
            from compat.envside.engine import describe

            missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
            send("failed", reason=f"cannot import {library_module}: {describe(exc)}", missing_module=missing)
            raise
    from compat.envside.recipe import load_recipes

    send("ready", import_seconds=time.perf_counter() - started, rss_mb=rss_mb(), torch=torch.__version__)
    loaded: dict[str, dict] = {}

    def recipes_for(command: dict) -> dict:
        key = json.dumps([command["fixtures"], command.get("user")], sort_keys=True)
        if key not in loaded:
            loaded[key] = load_recipes(command["fixtures"], command.get("user"))
        return loaded[key]

    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "exit":
            break
        serve(command, recipes_for)
        release_memory()
        send("done", rss_mb=rss_mb(), peak_rss_mb=peak_rss_mb())


if __name__ == "__main__":
    main()
