"""Where hostile input lands: one function per surface, taking the bytes of one file and a scratch folder, running
compat's reader and what a user runs after it (the command, in-process). ``outcome`` judges a run: a valid result or
compat's own error is fine; anything else (an exception compat did not name, a traceback on stderr, an exit code
other than 0, 1, 2) is a crash."""

from __future__ import annotations

import contextlib
import io
import json
import traceback
from pathlib import Path
from typing import Callable

from compat.shared.errors import CompatError
from hostile import seeds

Surface = Callable[[bytes, Path], None]


class Crash(Exception):
    """The command itself did not fail cleanly: what it printed, or the exit code."""


class Refused(CompatError):
    """The command refused the input cleanly: exit 2 and one line saying why."""


def cli(*args) -> int:
    from compat.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse
            code = exc.code
    if code not in (0, 1, 2) or "Traceback" in err.getvalue():
        raise Crash(f"exit {code}: {err.getvalue()[-2000:]}")
    if code == 2:
        raise Refused(err.getvalue().strip())
    return code


def _good(folder: Path) -> Path:
    path = folder / "good.safetensors"
    if not path.exists():
        path.write_bytes(seeds.safetensors_bytes())
    return path


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def matrix(data: bytes, folder: Path) -> None:
    from compat.host.matrix_file import load_matrix

    load_matrix(_write(folder, "matrix.yaml", data))


def rules(data: bytes, folder: Path) -> None:
    cli("convert", _good(folder), "--rules", _write(folder, "rules.yaml", data), "-o", folder / "out.safetensors")


def recipe_config(data: bytes, folder: Path) -> None:
    from compat.api import read_constructor_arguments, user_checkpoint

    config = read_constructor_arguments(_write(folder, "config.yaml", data))
    user_checkpoint(_good(folder), "x-transformers", config, "0.28.4")


def report(data: bytes, folder: Path) -> None:
    path = _write(folder, "report.json", data)
    for command in (["pins", path], ["known-breaks", path], ["merge", path, "--out", folder / "merged"]):
        cli(*command)


def safetensors(data: bytes, folder: Path) -> None:
    path = _write(folder, "a.safetensors", data)
    cli("diff", path, _good(folder), "--infer")
    empty = _write(folder, "empty.yaml", b"{}")
    cli("convert", path, "--rules", empty, "-o", folder / "out.safetensors", "--verify", _good(folder))


def stamp(data: bytes, folder: Path) -> None:
    """The metadata of a checkpoint (``data`` is the JSON of the ``compat.config`` entry, and the other entries)."""
    from compat.api import user_checkpoint

    metadata = dict(seeds.stamp_metadata(), **{"compat.config": data.decode("utf-8", "replace")})
    try:
        metadata.update({k: v for k, v in json.loads(data).items() if isinstance(v, str)})
    except (ValueError, AttributeError, RecursionError, TypeError):
        pass
    try:
        file = seeds.safetensors_bytes(metadata=metadata)
    except Exception:  # noqa: BLE001 - safetensors refuses to write it: nothing to read
        return
    user_checkpoint(_write(folder, "stamped.safetensors", file))


def manifest(data: bytes, folder: Path) -> None:
    artifact = folder / "artifact"
    artifact.mkdir(exist_ok=True)
    (artifact / "model.safetensors").write_bytes(seeds.safetensors_bytes())
    (artifact / "manifest.json").write_bytes(data)
    cli("diff", artifact, _good(folder))


def index(data: bytes, folder: Path) -> None:
    _good(folder)
    cli("diff", _write(folder, "model.safetensors.index.json", data), _good(folder))


def odd_tensors(data: bytes, folder: Path) -> None:
    """Two valid files with odd tensors (``data`` holds both, split at a NUL-free marker)."""
    first, _, second = data.partition(b"\n--compat-fuzz--\n")
    a, b = _write(folder, "odd-a.safetensors", first), _write(folder, "odd-b.safetensors", second)
    cli("diff", a, b, "--infer")
    cli("convert", a, "--rules", _write(folder, "empty.yaml", b"{}"), "-o", folder / "odd.safetensors", "--verify",
        b, "--atol", "0.5")


def pickle(data: bytes, folder: Path) -> None:
    cli("diff", _write(folder, "model.pt", data), _good(folder), "--allow-pickle")


SURFACES: dict[str, Surface] = {"matrix": matrix, "rules": rules, "recipe-config": recipe_config, "report": report,
                                "safetensors": safetensors, "stamp": stamp, "manifest": manifest, "index": index,
                                "odd-tensors": odd_tensors, "pickle": pickle}


def outcome(surface: Surface, data: bytes, folder: Path) -> str:
    """``ok`` or ``clean`` (compat's own error), or raises ``Crash`` with what went wrong."""
    try:
        surface(data, folder)
    except CompatError:
        return "clean"
    except Crash:
        raise
    except Exception as exc:  # noqa: BLE001 - exactly what this judges
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        raise Crash(f"{type(exc).__name__}: {str(exc)[:300]} at {Path(frame.filename).name}:{frame.lineno}") from exc
    return "ok"
