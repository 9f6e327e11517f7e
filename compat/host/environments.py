"""Release environments: one virtual environment per resolved pin set, built with uv, cached by content.

Layout under the cache folder::

    base/<key>/      the harness layer: torch (the host's version), numpy, safetensors; bytecode compiled once
    envs/<key>/      one release: a venv whose site-packages has a .pth line onto the harness layer, plus
                     compat-env.json (strategy, lock, attempts)

Sharing the harness layer means torch is installed and byte-compiled once, not once per release (compiling torch
takes ~10 s on 2 cores, and without bytecode every import re-compiles it). A release whose resolution picks a
different numpy or safetensors gets its own copy, which shadows the layer's.

Resolution strategies, in order: ``dated`` (dependencies as of the release's upload time, via uv's
``--exclude-newer``, with the harness packages exempt), then ``newest`` (the newest dependencies the release accepts).
The matrix's pins apply to both. Each environment records the strategy that worked and every attempt that did not.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from compat.host.pipconfig import IndexSettings
from compat.host.store import Store, file_lock
from compat.shared.errors import CompatError, EnvironmentBuildError

ENV_FORMAT = 1
HARNESS_EXTRAS = ("numpy", "safetensors")
FAR_FUTURE = "2100-01-01T00:00:00Z"


def host_torch_version() -> str:
    """The torch every environment is pinned to: the host's installed torch (or ``COMPAT_TORCH``)."""
    if os.environ.get("COMPAT_TORCH"):
        return os.environ["COMPAT_TORCH"]
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        raise CompatError("torch is not installed on the host; install the torch every environment should use "
                          "(e.g. `pip install torch==2.13.0`) or set COMPAT_TORCH") from None


def harness_packages() -> set[str]:
    """torch and everything it requires (from the host's metadata), numpy and safetensors: never date-limited."""
    names, todo = set(), ["torch", *HARNESS_EXTRAS]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in names:
            continue
        names.add(name)
        try:
            requirements = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requirements:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return names


@dataclass
class EnvRequest:
    """What one environment must contain."""

    library: str
    package: str
    version: str
    pins: tuple[str, ...] = ()
    uploaded: str = ""  # ISO upload time of the release, for the dated strategy
    wheel: str = ""  # an unreleased version: the wheel built from its source (``sources.py``)
    digest: str = ""  # ... and its source's content hash
    problem: str = ""  # ... or why it could not be built

    def requirements(self, torch_version: str) -> list[str]:
        package = f"{self.package} @ {Path(self.wheel).as_uri()}" if self.wheel else f"{self.package}=={self.version}"
        return [package, f"torch=={torch_version}", *HARNESS_EXTRAS, *self.pins]


@dataclass
class Environment:
    key: str
    path: Path
    request: EnvRequest
    strategy: str = ""
    lock: dict[str, str] = field(default_factory=dict)
    attempts: list[dict] = field(default_factory=list)
    fresh: bool = False  # built by this process (not found in the cache)

    @property
    def python(self) -> Path:
        return self.path / "venv" / "bin" / "python"

    def record(self) -> dict:
        return {"key": self.key, "strategy": self.strategy, "lock": self.lock, "attempts": self.attempts,
                "pins": list(self.request.pins)}


def _digest(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:20]


def _rfc3339_after(uploaded: str) -> str:
    moment = datetime.fromisoformat(uploaded.replace("Z", "+00:00")) + timedelta(seconds=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class EnvironmentBuilder:
    def __init__(self, cache_dir: Path, index: IndexSettings, torch_version: str | None = None,
                 uv: str | None = None):
        self.cache_dir, self.index = cache_dir, index
        self.store = Store(Path(cache_dir))
        self.torch_version = torch_version or host_torch_version()
        self.uv = uv or find_uv()
        # the interpreter itself, not how it was spelled: `compat` runs bin/python3 and `python -m` runs bin/python,
        # symlinks to one interpreter, and must share one cache
        self.python = os.path.realpath(sys.executable)
        self.python_version = ".".join(map(str, sys.version_info[:3]))
        self._base: dict | None = None

    # -- keys -------------------------------------------------------------------------------------------------
    def base_key(self) -> str:
        return _digest({"format": ENV_FORMAT, "python": self.python, "version": self.python_version,
                        "torch": self.torch_version, "index": self.index.identity()})

    def key(self, request: EnvRequest) -> str:
        """Content address of an environment: everything that decides what gets installed."""
        identity = {"base": self.base_key(), "package": canonicalize_name(request.package),
                    "version": request.version, "pins": sorted(request.pins)}
        if request.digest:  # an unreleased version: rebuilt when its source changes, not otherwise
            identity["source"] = request.digest
        return _digest(identity)

    def cached(self, request: EnvRequest) -> Environment | None:
        key = self.key(request)
        record = self.store.env(key) / "compat-env.json"
        if not record.is_file():
            return None
        data = json.loads(record.read_text())
        return Environment(key, record.parent, request, data["strategy"], data["lock"], data["attempts"])

    # -- building ---------------------------------------------------------------------------------------------
    def base_layer(self) -> dict:
        """Build (once) the shared harness layer and return ``{"site": path, "lock": {...}}``."""
        if self._base is not None:
            return self._base
        folder = self.store.base(self.base_key())
        record = folder / "compat-base.json"
        with file_lock(folder.with_suffix(".lock")):
            if not record.is_file():
                shutil.rmtree(folder, ignore_errors=True)
                venv = folder / "venv"
                self._uv(["venv", "--quiet", "--python", self.python, str(venv)], "creating the harness layer")
                self._uv(["pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), "--compile-bytecode",
                          *self.index.uv_args(), f"torch=={self.torch_version}", *HARNESS_EXTRAS],
                         "installing torch, numpy and safetensors into the harness layer")
                frozen = self._uv(["pip", "freeze", "--python", str(venv / "bin" / "python")], "listing the layer")
                site = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig;"
                                       "print(sysconfig.get_paths()['purelib'])"],
                                      capture_output=True, text=True, check=True).stdout.strip()
                record.write_text(json.dumps({"site": site, "lock": _parse_lock(frozen)}))
        self._base = json.loads(record.read_text())
        return self._base

    def build(self, request: EnvRequest) -> Environment:
        """The environment for ``request``, from the cache or built now. Raises EnvironmentBuildError."""
        if request.problem:
            raise EnvironmentBuildError(request.problem)
        cached = self.cached(request)
        if cached:
            return cached
        key = self.key(request)
        folder = self.store.env(key)
        with file_lock(folder.with_suffix(".lock")):
            cached = self.cached(request)
            if cached:
                return cached
            base = self.base_layer()
            env = Environment(key, folder, request, fresh=True)
            env.lock = self._resolve(env)
            shutil.rmtree(folder, ignore_errors=True)
            venv = folder / "venv"
            self._uv(["venv", "--quiet", "--python", self.python, str(venv)], f"creating {request.package}")
            site = Path(subprocess.run([str(venv / "bin" / "python"), "-c",
                                        "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                       capture_output=True, text=True, check=True).stdout.strip())
            (site / "_compat_harness.pth").write_text(base["site"] + "\n")
            own = [f"{name} {version}" if version.startswith("@ ") else f"{name}=={version}"
                   for name, version in env.lock.items() if base["lock"].get(name) != version]
            if own:
                self._uv(["pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), "--no-deps",
                          "--compile-bytecode", *self.index.uv_args(), *own],
                         f"installing {request.package}=={request.version}")
            (folder / "compat-env.json").write_text(json.dumps(
                {"strategy": env.strategy, "lock": env.lock, "attempts": env.attempts, "built": time.time()},
                indent=1))
            return env

    def _resolve(self, env: Environment) -> dict[str, str]:
        request = env.request
        requirements = "\n".join(request.requirements(self.torch_version)) + "\n"
        strategies = []
        if request.uploaded:
            exempt = []
            for name in sorted(harness_packages() | {"torch"}):
                exempt += ["--exclude-newer-package", f"{name}={FAR_FUTURE}"]
            strategies.append(("dated", ["--exclude-newer", _rfc3339_after(request.uploaded), *exempt]))
        strategies.append(("newest", []))
        for strategy, extra in strategies:
            result = subprocess.run(
                [self.uv, "pip", "compile", "-", "--quiet", "--no-header", "--no-annotate", "--python", self.python,
                 *self.index.uv_args(), *extra], input=requirements, capture_output=True, text=True)
            if result.returncode == 0:
                env.strategy = strategy
                env.attempts.append({"strategy": strategy, "ok": True})
                return _parse_lock(result.stdout)
            env.attempts.append({"strategy": strategy, "ok": False, "error": _tail(result.stderr)})
        messages = "\n".join(f"[{a['strategy']}] {a['error']}" for a in env.attempts)
        raise EnvironmentBuildError(f"cannot resolve {request.package}=={request.version} "
                                    f"(pins: {list(request.pins) or 'none'}):\n{messages}")

    def _uv(self, args: list[str], what: str) -> str:
        result = subprocess.run([self.uv, *args], capture_output=True, text=True)
        if result.returncode != 0:
            raise EnvironmentBuildError(f"{what} failed: {_tail(result.stderr)}")
        return result.stdout


def _parse_lock(text: str) -> dict[str, str]:
    lock = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].split(";", 1)[0].strip()
        if " @ " in line and not line.startswith("-"):  # a direct reference: an unreleased version's wheel
            name, url = line.split(" @ ", 1)
            lock[canonicalize_name(name)] = f"@ {url.strip()}"
        elif "==" in line and not line.startswith("-"):
            name, version = line.split("==", 1)
            lock[canonicalize_name(name)] = version.strip()
    return lock


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def find_uv() -> str:
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if not found:
            raise CompatError("uv is not installed: `pip install uv`") from None
        return found
