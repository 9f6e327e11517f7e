"""A store of release artifacts: what producers wrote for released versions, kept in a folder CI caches or a
repository commits, so that checking unreleased code against N releases builds one environment, not N + 1.

Layout (small: tiny models)::

    <store>/<library>/<version>/<recipe>/manifest.json, *.safetensors, ...   the artifact as the producer wrote it
    <store>/<library>/<version>/<recipe>/compat-store.json                    {"code": the recipe code's hash}
    <store>/.compat-artifacts                                                 marks the folder as a store

An artifact is taken from the store when it was made by the same recipe code (the fixtures module and compat's
worker side: ``recipe_index.code_hash``); otherwise the release is produced again and the store updated. Only
released versions are stored: an unreleased version's artifacts change with its source. A stored artifact whose
manifest does not validate is a problem naming the file: its cells are errors, the rest runs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from compat.shared.errors import CompatError
from compat.shared.protocol import STATUSES
from compat.shared.untrusted import parse_json, read_text

RECORD = "compat-store.json"
MANIFEST = "manifest.json"
MARKER = ".compat-artifacts"  # at the store's root: a working tree's content hash leaves the store out


@dataclass(frozen=True)
class Stored:
    folder: Path
    identity: str  # what a result's key holds for this artifact: the manifest's hash


class ArtifactStore:
    def __init__(self, root: Path):
        self.root = Path(root).resolve()

    def folder(self, library: str, version: str, recipe: str) -> Path:
        return self.root / library / version / recipe

    def lookup(self, library: str, version: str, recipe: str, code: str) -> Stored | None:
        """The stored artifact made by ``code``, or None (not stored, or made by other recipe code). Raises
        ``CompatError`` naming the file when a stored manifest does not validate."""
        folder = self.folder(library, version, recipe)
        try:
            record = json.loads((folder / RECORD).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("code") != code:
            return None
        manifest_path = folder / MANIFEST
        try:
            text = read_text(manifest_path, "stored manifest")
            manifest = parse_json(text, str(manifest_path), "stored manifest")
        except (OSError, CompatError) as exc:
            raise CompatError(f"stored artifact: {exc}") from None
        problems = manifest_problems(manifest, library, version, recipe)
        if problems:
            raise CompatError(f"stored artifact {manifest_path}: " + "; ".join(problems))
        return Stored(folder, "stored-" + hashlib.sha256(text.encode()).hexdigest()[:20])

    def save(self, library: str, version: str, recipe: str, code: str, artifact: Path) -> None:
        """Copy a finished artifact into the store (replacing what was there), its record last."""
        folder = self.folder(library, version, recipe)
        folder.parent.mkdir(parents=True, exist_ok=True)
        (self.root / MARKER).write_text("a store of release artifacts written by compat (compat run --artifacts)\n")
        staging = folder.with_name(f".{recipe}.incoming")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(artifact, staging)
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
        (folder / RECORD).write_text(json.dumps({"code": code}) + "\n")


def manifest_problems(manifest: object, library: str, version: str, recipe: str) -> list[str]:
    """What is wrong with a stored manifest: not a mapping, an unknown status, or made for another cell."""
    if not isinstance(manifest, dict):
        return [f"expected a JSON object, got {type(manifest).__name__}"]
    problems = []
    if manifest.get("status") not in STATUSES:
        problems.append(f"status: expected one of {', '.join(STATUSES)}, got {manifest.get('status')!r}")
    if manifest.get("status") == "ok" and not isinstance(manifest.get("kind"), str):
        problems.append(f"kind: expected a recipe kind's name, got {manifest.get('kind')!r}")
    for name, expected in (("library", library), ("version", version), ("recipe", recipe)):
        if manifest.get(name) != expected:
            problems.append(f"{name}: expected {expected!r} (where it is stored), got {manifest.get(name)!r}")
    return problems


@dataclass
class ReleaseArtifacts:
    """A run's use of a store: which releases' artifacts it takes from it, what is wrong with a stored one, and what
    the run adds. Unreleased versions (``unreleased(library, version)``) are never stored."""

    store: ArtifactStore
    unreleased: Callable[[str, str], bool]
    code: dict[str, str]  # library -> recipe code hash
    problems: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (library, version, recipe) -> what
    _found: dict[tuple[str, str, str], Stored | None] = field(default_factory=dict)

    def stored(self, library: str, version: str, recipe: str) -> Stored | None:
        key = (library, version, recipe)
        if key not in self._found:
            self._found[key] = None
            if not self.unreleased(library, version):
                try:
                    self._found[key] = self.store.lookup(library, version, recipe, self.code[library])
                except CompatError as exc:
                    self.problems[key] = str(exc)
        return self._found[key]

    def keep(self, made: set[tuple[str, str, str]], artifact_dir: Callable[[str, str, str], Path]) -> None:
        """Add the releases' artifacts a run made (not taken from the store) to the store."""
        for key in sorted(made):
            folder = artifact_dir(*key)
            if (self.unreleased(*key[:2]) or self.stored(*key) is not None or key in self.problems
                    or not (folder / MANIFEST).is_file()):
                continue
            self.store.save(*key, self.code[key[0]], folder)
