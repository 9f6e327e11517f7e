"""The worker: one process per release environment.

Started by the host as ``<env python> -m compat.envside.worker``. It imports torch and the library under test once,
then serves commands read as JSON lines on stdin and answers as JSON lines on its own copy of stdout (the real stdout
is pointed at stderr so that a library's prints cannot corrupt the protocol):

- ``{"cmd": "produce", "library", "version", "fixtures", "recipes": {name: artifact_dir}}``: build each recipe,
  fill its weights from parameter names, run it, and write the artifact.
- ``{"cmd": "consume", "fixtures", "cells": [{"id", "recipe", "producer", "artifact", "result"}]}``: load every
  producer's artifact with this release and write the findings of each cell to its ``result`` path.
- ``{"cmd": "exit"}``.

A failure inside one recipe or cell is caught and recorded in that cell; only a crash or a hang loses the process, and
the host turns the environment's unfinished cells into ``error``.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path


def _protocol_stream():
    stream = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return stream


PROTOCOL = _protocol_stream()


def send(event: str, **fields) -> None:
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


def probe_across_releases(recipe, cell: dict) -> dict | None:
    """A probe's verdict belongs to one release; a matrix that lists it without ``probe: true`` asks for cells across
    releases, which get this error instead of the producer's result under another release's name."""
    if not getattr(recipe, "probe", False) or cell["producer"] == cell["consumer"]:
        return None
    return {"status": "error", "reason": f"recipe {cell['recipe']!r} is a probe, one verdict per release: list it in "
            f"the matrix as `{cell['recipe']}: {{probe: true}}` (its result in {cell['producer']} says nothing about "
            "another release)"}


def out_of_memory(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or ("alloc" in text and "memory" in text)


def describe(exc: BaseException) -> str:
    prefix = "out of memory: " if out_of_memory(exc) else ""
    return f"{prefix}{type(exc).__name__}: {exc}".strip()


def main() -> None:
    started = time.perf_counter()
    threads = int(os.environ.get("COMPAT_THREADS", "1"))
    import torch

    torch.set_num_threads(threads)
    library_module = os.environ.get("COMPAT_IMPORT")
    if library_module:
        try:
            __import__(library_module)
        except Exception as exc:  # noqa: BLE001 - the host says what to do; a traceback alone does not
            missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
            send("failed", reason=f"cannot import {library_module}: {describe(exc)}", missing_module=missing)
            raise
    from compat.envside import artifact, compare
    from compat.envside.recipe import NotApplicable, load_recipes
    from compat.shared.rules import RuleSet

    send("ready", import_seconds=time.perf_counter() - started, rss_mb=rss_mb(), torch=torch.__version__)

    recipe_cache: dict[str, dict] = {}

    def recipes(command: dict) -> dict:
        key = json.dumps([command["fixtures"], command.get("user")], sort_keys=True)
        if key not in recipe_cache:
            recipe_cache[key] = load_recipes(command["fixtures"], command.get("user"))
        return recipe_cache[key]

    def produce(library: str, version: str, recipe, folder: Path, checkpoint: str | None = None) -> dict:
        manifest = artifact.base_manifest(library, version, recipe.name, recipe.config)
        if getattr(recipe, "saves_folder", False):  # saved with the library's own save_pretrained
            return produce_folder(recipe, folder, manifest)
        try:
            model = recipe.build()
        except NotApplicable as exc:
            return artifact.write_unbuildable(folder, manifest, "not-applicable", str(exc))
        except Exception as exc:  # noqa: BLE001 - the release fails on a config it accepts
            return artifact.write_unbuildable(folder, manifest, "error" if out_of_memory(exc) else "broken",
                                              f"building: {describe(exc)}\n" + traceback.format_exc(limit=-3))
        try:
            if checkpoint:  # a user's own weights, in the release they were saved with
                from safetensors.torch import load_file

                recipe.load(model, load_file(checkpoint))
            else:
                from compat.envside.fill import fill_parameters

                fill_parameters(model)
            inputs = recipe.inputs()
            outputs = recipe.run(model, inputs)
            return artifact.write_artifact(folder, manifest, recipe.state_dict(model), inputs, outputs)
        except Exception as exc:  # noqa: BLE001 - built, but the release cannot run or save it: a broken release
            status = "error" if out_of_memory(exc) else "broken"
            return artifact.write_unbuildable(folder, manifest, status, f"{describe(exc)}\n"
                                              + traceback.format_exc(limit=-3))

    def produce_folder(recipe, folder: Path, manifest: dict) -> dict:
        try:
            return recipe.produce(folder, manifest)
        except NotApplicable as exc:
            return artifact.write_unbuildable(folder, manifest, "not-applicable", str(exc))
        except Exception as exc:  # noqa: BLE001 - the release fails on a config it accepts
            return artifact.write_unbuildable(folder, manifest, "error" if out_of_memory(exc) else "broken",
                                              f"{describe(exc)}\n" + traceback.format_exc(limit=-3))

    def consume_folder(recipe, folder: Path, manifest: dict) -> dict:
        try:
            return recipe.consume(folder, manifest)
        except NotApplicable as exc:
            return {"status": "not-applicable", "reason": f"consumer: {exc}"}

    def consume(recipe, producer: str, folder: Path, rule: dict | None = None) -> dict:
        manifest = artifact.read_manifest(folder)
        if manifest["status"] != "ok":
            return {"status": manifest["status"], "reason": f"producer {producer}: {manifest.get('reason', '')}",
                    "failed": "producer"}
        if getattr(recipe, "saves_folder", False):
            return consume_folder(recipe, folder, manifest)
        rules = RuleSet.from_data(rule) if rule else None
        try:
            model = recipe.build(rules.consumer_args if rules else None)
        except NotApplicable as exc:
            return {"status": "not-applicable", "reason": f"consumer: {exc}"}
        except Exception as exc:  # noqa: BLE001
            return {"status": "error" if out_of_memory(exc) else "broken",
                    "reason": f"consumer cannot build it: {describe(exc)}\n" + traceback.format_exc(limit=-3)}
        state = artifact.read_tensors(folder, "model")
        produced = manifest["keys"]
        finding: dict = {"status": "ok", "rule": rule or None}
        if rules:  # a conversion rule: the producer's tensors as this release expects them
            state, finding["rule_notes"] = artifact.apply_rules(rules, state)
            produced = artifact.key_layout(state, with_digest=False)
        finding["keys"] = compare.diff_keys(produced,
                                            artifact.key_layout(recipe.state_dict(model), with_digest=False))
        try:
            recipe.load(model, state)
        except Exception as exc:  # noqa: BLE001
            finding["load_error"] = describe(exc)
            return finding
        after = recipe.state_dict(model)
        finding["tensors_changed_on_load"] = sorted(
            key for key, tensor in state.items() if key in after and not compare.bitwise_equal(tensor, after[key]))
        expected = artifact.read_tensors(folder, "outputs")
        try:
            actual = recipe.run(model, artifact.read_tensors(folder, "inputs"))
        except Exception as exc:  # noqa: BLE001
            finding["forward_error"] = describe(exc)
            return finding
        finding["outputs"] = {
            name: compare.output_stats(tensor, actual[name]) if name in actual else {"missing": True}
            for name, tensor in expected.items()}
        return finding

    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "exit":
            break
        if command["cmd"] == "produce":
            available = recipes(command)
            user = command.get("user") or {}
            for name, folder in command["recipes"].items():
                t0 = time.perf_counter()
                checkpoint = user.get("checkpoint") if name == user.get("name") else None
                if name in available:
                    manifest = produce(command["library"], command["version"], available[name], Path(folder),
                                       checkpoint)
                else:
                    manifest = artifact.write_unbuildable(
                        Path(folder), artifact.base_manifest(command["library"], command["version"], name, {}),
                        "error", f"{command['fixtures']} has no recipe {name!r} (it has: {', '.join(available)})")
                print(f"compat-worker: produced {folder}: {manifest['status']}", file=sys.stderr, flush=True)
                send("produced", recipe=name, status=manifest["status"], seconds=time.perf_counter() - t0)
        elif command["cmd"] == "consume":
            available = recipes(command)
            for cell in command["cells"]:
                t0 = time.perf_counter()
                try:
                    recipe = available[cell["recipe"]]
                    finding = probe_across_releases(recipe, cell) or consume(
                        recipe, cell["producer"], Path(cell["artifact"]), cell.get("rule"))
                except Exception as exc:  # noqa: BLE001
                    finding = {"status": "error", "reason": f"consuming: {describe(exc)}\n"
                               + traceback.format_exc(limit=-3)}
                finding["seconds"] = time.perf_counter() - t0
                artifact.write_json_atomic(Path(cell["result"]), finding)
                send("cell", id=cell["id"], status=finding["status"])
        release_memory()
        send("done", rss_mb=rss_mb(), peak_rss_mb=peak_rss_mb())


if __name__ == "__main__":
    main()
