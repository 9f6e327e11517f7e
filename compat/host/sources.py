"""Unreleased versions of a library: a working tree, a git commit, a wheel or an sdist, built into a wheel once.

A maintainer's matrix holds them beside releases (``{path: .}``, ``{git: URL, ref: REF}``, ``{wheel: FILE}``,
``{sdist: FILE}``). Each becomes a version named by the package's own version and where it came from, as a PEP 440
local label so that it sorts after the release it builds on and version ranges still apply to it:
``2.25.5+worktree``, ``2.25.5+main.3f2a1c9``, ``2.25.5+wheel``. The wheel is built with uv and kept in the store under
the source's content hash (every file of a tree, the commit of a git ref, the bytes of a file), so its environment is
built again exactly when the source changes.

A source that cannot be built is not a matrix error: its cells are errors with the build's message, and the rest runs.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from compat.host.artifact_store import MARKER as STORE_MARKER
from compat.host.matrix import VersionSelector
from compat.host.pipconfig import IndexSettings
from compat.host.registry import version_of_file
from compat.host.store import Store, file_lock

SOURCE_KINDS = ("path", "git", "wheel", "sdist")
SKIPPED = {".git", ".hg", ".compat", ".venv", "venv", "build", "dist", "__pycache__", ".pytest_cache", ".tox",
           ".mypy_cache", ".ruff_cache", ".hypothesis", "node_modules", "report"}


@dataclass(frozen=True)
class Source:
    kind: str  # path, git, wheel or sdist
    location: str  # the folder, URL@ref or file, as the matrix names it
    version: str  # the version as cells name it, e.g. 2.25.5+worktree
    digest: str  # content hash: the environment is rebuilt when it changes
    wheel: str = ""  # the built wheel, installed into the environment
    problem: str = ""  # why it could not be built (its cells are errors)
    commit: str = ""

    def record(self) -> dict:
        return {"kind": self.kind, "location": self.location, "digest": self.digest, "wheel": self.wheel,
                "commit": self.commit, **({"problem": self.problem} if self.problem else {})}


def tree_digest(folder: Path) -> str:
    """Every file's path and bytes under ``folder``, except version-control, cache and build folders and a store of
    release artifacts (which a run adds to: the tree's environment must not be rebuilt for that)."""
    digest = hashlib.sha256()
    for path in sorted(_files(folder)):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:20]


def _files(folder: Path):
    for entry in folder.iterdir():
        if entry.name in SKIPPED or entry.name.endswith(".egg-info") or entry.is_symlink():
            continue
        if entry.is_dir():
            if not (entry / STORE_MARKER).is_file():  # a store of release artifacts kept in the repository
                yield from _files(entry)
        elif entry.is_file() and not entry.name.endswith((".pyc", ".pyo")):
            yield entry


def resolve_source(selector: VersionSelector, package: str, store: Store, index: IndexSettings, uv: str) -> Source:
    """Build (or find in the store) the wheel of an unreleased version and name it."""
    if selector.kind == "git":
        return _from_git(selector, package, store, index, uv)
    location = Path(selector.value)
    if selector.kind == "path":
        digest, tag = "tree-" + tree_digest(location), "worktree"
    else:
        digest, tag = f"{selector.kind}-" + hashlib.sha256(location.read_bytes()).hexdigest()[:20], selector.kind
    if selector.kind == "wheel":
        version = version_of_file(location.name) or "0"
        return Source("wheel", str(location), _label(version, tag), digest, str(location))
    return _built(selector.kind, str(location), location, tag, digest, package, store, index, uv)


def _from_git(selector: VersionSelector, package: str, store: Store, index: IndexSettings, uv: str) -> Source:
    """The wheel of a git ref: from the store when the ref's commit (asked of the remote, no clone) was built before,
    else cloned and built. Every plan resolution asks, so a matrix naming a branch costs one ``git ls-remote``."""
    ref = selector.ref or "HEAD"
    location = f"{selector.value}@{ref}"
    commit = remote_commit(selector.value, ref)
    if commit and (store.source(f"git-{commit}") / "source.json").is_file():  # built: _built needs no source tree
        built = _built("git", location, Path(), _ref_tag(ref, commit), f"git-{commit}", package, store, index, uv)
        return replace(built, commit=commit)
    with tempfile.TemporaryDirectory(prefix="compat-git-") as scratch:
        checkout = Path(scratch) / "checkout"
        for step, args in (("clone", ["clone", "--quiet", "--no-checkout", selector.value, str(checkout)]),
                           ("checkout", ["-C", str(checkout), "checkout", "--quiet", "--detach", ref])):
            done = subprocess.run(["git", *args], capture_output=True, text=True)
            if done.returncode != 0:
                return Source("git", location, _label("0", _ref_tag(ref, "")), "git-unknown",
                              problem=f"git {step} failed for {location}: {done.stderr.strip()[-500:]}")
        commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        built = _built("git", location, checkout, _ref_tag(ref, commit), f"git-{commit}", package, store, index, uv)
    return replace(built, commit=commit)


def remote_commit(url: str, ref: str) -> str:
    """The commit a ref names, without a clone: a full commit is itself; a branch, a tag (the commit it points to) or
    HEAD is asked of the remote, a tag before a branch of the same name as ``git checkout`` takes it. "" where the
    remote names none (a short commit, an unknown ref, no network): the caller clones."""
    if re.fullmatch(r"[0-9a-f]{40}", ref):
        return ref
    done = subprocess.run(["git", "ls-remote", url, ref, f"{ref}^{{}}"], capture_output=True, text=True)
    if done.returncode != 0:
        return ""
    found = dict(reversed(line.split("\t", 1)) for line in done.stdout.splitlines() if "\t" in line)
    for name in (f"refs/tags/{ref}^{{}}", f"refs/heads/{ref}", f"refs/tags/{ref}", ref):
        if name in found:
            return found[name]
    return ""


def _built(kind: str, location: str, source: Path, tag: str, digest: str, package: str, store: Store,
           index: IndexSettings, uv: str) -> Source:
    folder = store.source(digest)
    record = folder / "source.json"
    with file_lock(folder.with_suffix(".lock")):
        if not record.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            done = subprocess.run([uv, "build", "--wheel", "--quiet", "--out-dir", str(folder), *index.uv_args(),
                                   str(source)], capture_output=True, text=True)
            wheels = sorted(folder.glob("*.whl"))
            if done.returncode != 0 or not wheels:
                shutil.rmtree(folder, ignore_errors=True)
                return Source(kind, location, _label("0", tag), digest,
                              problem=f"building a wheel from {location} failed: {_tail(done.stderr)}")
            record.write_text(json.dumps({"wheel": wheels[0].name, "location": location}))
    wheel = folder / json.loads(record.read_text())["wheel"]
    if not wheel.name.replace("_", "-").lower().startswith(package.replace("_", "-").lower() + "-"):
        return Source(kind, location, _label("0", tag), digest,
                      problem=f"{location} builds {wheel.name}, not a wheel of {package}")
    return Source(kind, location, _label(version_of_file(wheel.name) or "0", tag), digest, str(wheel))


def _label(version: str, tag: str) -> str:
    """``2.25.5`` + ``worktree`` -> ``2.25.5+worktree``; a version with a local part keeps it (``1.0+g3f2a.wheel``)."""
    return f"{version}.{tag}" if "+" in version else f"{version}+{tag}"


def _ref_tag(ref: str, commit: str) -> str:
    """A local-version-safe name for a git ref and its commit: ``main.3f2a1c9``; a commit alone: ``git.3f2a1c9``."""
    short = commit[:7] or "unknown"
    if ref == "HEAD" or re.fullmatch(r"[0-9a-f]{7,40}", ref):
        return f"git.{short}"
    name = re.sub(r"[^A-Za-z0-9]+", ".", ref).strip(".").lower() or "git"
    return f"{name}.{short}"


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:]) or "no message"
