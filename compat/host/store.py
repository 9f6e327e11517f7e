"""The cache folder: its layout and its keys, owned here and nowhere else.

::

    registry/<package>.json                         releases and upload times, from the package index
    recipes/<fixtures>-<code hash>.json             the recipe names a fixtures module has (and which are probes)
    base/<key>/                                     the harness layer: numpy and safetensors for this interpreter+torch
    envs/<key>/                                     one release's environment (a venv onto the harness layer)
    sources/<content hash>/                         the wheel built from an unreleased version (``sources.py``)
    install-checks/<key>.json                       a release declared uninstallable that refused to install
    artifacts/<library>/<version>/<recipe>/<key>/   what a producer wrote (manifest.json last)
    artifacts/<library>/<version>.lock              held while a release produces
    results/<library>/<recipe>/<key>.json           one cell's finding; results/<library>/index.json indexes them
    logs/<library>-<version>.log                    a worker's stderr
    locks/<name>.lock                               cross-process locks (pytest-xdist workers)

An artifact's key is what it depends on: the environment and the recipe code (``code_hash``). A result's key adds
the producer's artifact and the cell's conversion rule. Change either and the cell is computed again; change nothing
and a rerun reads ``results/<library>/index.json`` only.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def default_cache_dir(matrix: Path | None = None) -> Path:
    """The cache for a run of ``matrix`` (default: the one found from the working directory): see ``locate``."""
    from compat.host.locate import find_cache

    return find_cache(matrix).path


@dataclass(frozen=True)
class Store:
    root: Path

    def registry(self, package: str) -> Path:
        return self.root / "registry" / f"{package}.json"

    def recipes(self, fixtures_stem: str, code_hash: str) -> Path:
        return self.root / "recipes" / f"{fixtures_stem}-{code_hash}.json"

    def base(self, key: str) -> Path:
        return self.root / "base" / key

    def env(self, key: str) -> Path:
        return self.root / "envs" / key

    def install_check(self, env_key: str) -> Path:
        """A release declared uninstallable that refused to install (``install_checks.py``)."""
        return self.root / "install-checks" / f"{env_key}.json"

    def source(self, digest: str) -> Path:
        """The wheel built from an unreleased version (a working tree, a git commit, an sdist)."""
        return self.root / "sources" / digest

    def artifact(self, library: str, version: str, recipe: str, env_key: str, code: str) -> Path:
        """The producer's environment and the recipe code decide the artifact's key."""
        key = hashlib.sha256(f"{env_key}|{code}|{recipe}".encode()).hexdigest()[:20]
        return Path(os.path.join(self.root, "artifacts", library, version, recipe, key))

    def producing_lock(self, library: str, version: str) -> Path:
        return self.root / "artifacts" / library / f"{version}.lock"

    def results(self) -> Path:
        return self.root / "results"

    def result(self, library: str, recipe: str, env_key: str, artifact: str, code: str, rule: str) -> Path:
        """The consumer's environment, the producer's artifact (its key), the recipe code and the rule decide the
        result's key."""
        key = hashlib.sha256(f"{env_key}|{artifact}|{code}|{rule}".encode()).hexdigest()[:24]
        return Path(os.path.join(self.root, "results", library, recipe, f"{key}.json"))

    def log(self, library: str, version: str) -> Path:
        return self.root / "logs" / f"{library}-{version}.log"

    def lock(self, name: str) -> Path:
        return self.root / "locks" / f"{name}.lock"


@contextmanager
def file_lock(path: Path):
    """An exclusive lock shared by processes (pytest-xdist workers, parallel runs) on the same cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_RULE_TEXT: dict[int, tuple[dict, str]] = {}


def rule_text(rule: dict | None) -> str:
    """A rule as canonical JSON, for cache keys: remembered by identity (the matrix's rules are few and long-lived)."""
    if not rule:
        return ""
    cached = _RULE_TEXT.get(id(rule))
    if cached is None or cached[0] is not rule:
        cached = _RULE_TEXT[id(rule)] = (rule, json.dumps(rule, sort_keys=True))
    return cached[1]
