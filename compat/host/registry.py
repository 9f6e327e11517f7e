"""Releases of a package on the registry, and version selectors resolved against them.

Reads the index's JSON simple API (PEP 691, with PEP 700 upload times), which PyPI and any compliant mirror serve.
The answer is cached on disk so a run without network still knows the releases it saw last (it says so).
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from compat.host.matrix import VersionSelector
from compat.host.store import Store
from compat.shared.errors import RegistryError
from compat.shared.files import write_json_atomic

ACCEPT = "application/vnd.pypi.simple.v1+json"
CACHE_SECONDS = 600


@dataclass(frozen=True)
class Release:
    version: str
    uploaded: str  # ISO-8601, the newest upload time among the release's files
    yanked: bool

    @property
    def parsed(self) -> Version:
        return Version(self.version)


def fetch_releases(package: str, index_url: str, cache_dir: Path, max_age: float = CACHE_SECONDS) -> list[Release]:
    """All releases of ``package``, oldest first; from the disk cache when it is fresher than ``max_age``."""
    cache = Store(cache_dir).registry(canonicalize_name(package))
    cached = _read_cache(cache)
    if cached is not None and time.time() - cache.stat().st_mtime < max_age:
        return _releases(cached)
    url = f"{index_url.rstrip('/')}/{canonicalize_name(package)}/"
    try:
        request = urllib.request.Request(url, headers={"Accept": ACCEPT})
        with urllib.request.urlopen(request, timeout=30) as response:
            data = json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise RegistryError(f"package {package!r} does not exist on {index_url}") from None
        data = _stale(cached, cache, package, f"{url}: HTTP {exc.code}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        data = _stale(cached, cache, package, f"{url}: {exc}")
    else:
        # whole or not at all: under pytest -n 2 another process may read it while this one writes
        write_json_atomic(cache, {"files": [{k: f.get(k) for k in ("filename", "upload-time", "yanked")}
                                            for f in data.get("files", [])]})
    return _releases(data)


def _read_cache(cache: Path) -> dict | None:
    """The releases seen last, or None where there are none usable (no file, or one that does not parse)."""
    try:
        data = json.loads(cache.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("files"), list) else None


def _stale(cached: dict | None, cache: Path, package: str, problem: str) -> dict:
    if cached is not None:
        print(f"compat: registry unreachable ({problem}); using the releases of {package} seen last", file=sys.stderr)
        return cached
    unusable = f" (and the releases seen last, {cache}, cannot be read)" if cache.exists() else ""
    raise RegistryError(f"cannot read the releases of {package!r}: {problem}{unusable}")


def _releases(data: dict) -> list[Release]:
    by_version: dict[str, dict] = {}
    for file in data.get("files", []):
        version = version_of_file(file["filename"])
        if version is None:
            continue
        entry = by_version.setdefault(version, {"uploaded": "", "yanked": True})
        entry["uploaded"] = max(entry["uploaded"], file.get("upload-time") or "")
        entry["yanked"] = entry["yanked"] and bool(file.get("yanked"))
    releases = [Release(v, e["uploaded"], e["yanked"]) for v, e in by_version.items()]
    return sorted(releases, key=lambda r: r.parsed)


def version_of_file(filename: str) -> str | None:
    """The version part of a wheel or sdist file name."""
    if filename.endswith(".whl"):
        text = filename.split("-")[1]
    else:
        for suffix in (".tar.gz", ".zip", ".tar.bz2", ".tgz"):
            if filename.endswith(suffix):
                text = filename[: -len(suffix)].rsplit("-", 1)[-1]
                break
        else:
            return None
    try:
        return str(Version(text))
    except InvalidVersion:
        return None


def select(selectors: tuple[VersionSelector, ...], releases: list[Release]) -> tuple[list[str], list[str]]:
    """Resolve release selectors to concrete versions (sorted, unique). Returns (versions, problems). Unreleased
    versions (a path, git, wheel or sdist) are not the registry's: ``sources.py`` resolves them."""
    stable = [r for r in releases if not r.yanked and not r.parsed.is_prerelease]
    known = {r.version for r in releases}
    chosen: set[str] = set()
    problems = []
    for selector in selectors:
        if selector.kind == "exact":
            if selector.value in known:
                chosen.add(selector.value)
            else:
                near = ", ".join(_nearest(selector.value, stable))
                problems.append(f"{selector.where}: version {selector.value} does not exist on the registry"
                                f" (nearest releases: {near})")
        elif selector.kind == "latest":
            if stable:
                chosen.add(stable[-1].version)
        elif selector.kind == "latest-pre":
            offered = [r for r in releases if not r.yanked]
            if offered:
                chosen.add(offered[-1].version)
        elif selector.kind == "range":
            pool = [r for r in releases if not r.yanked] if selector.pre else stable
            matching = [r for r in pool if SpecifierSet(selector.value).contains(r.version, prereleases=selector.pre)]
            if not matching:
                problems.append(f"{selector.where}: no release matches {selector.value!r}")
            chosen.update(r.version for r in sample(matching, selector.sample))
    return sorted(chosen, key=Version), problems


def sample(releases: list[Release], rule: str) -> list[Release]:
    """Thin a sorted list of releases: ``all``, the newest patch of each minor, or the newest of each major."""
    if rule == "all":
        return list(releases)
    width = 2 if rule == "newest-patch-per-minor" else 1
    newest: dict[tuple, Release] = {}
    for release in releases:
        newest[release.parsed.release[:width]] = release
    return list(newest.values())


def _nearest(version: str, releases: list[Release], count: int = 3) -> list[str]:
    try:
        target = Version(version)
    except InvalidVersion:
        return [r.version for r in releases[-count:]]
    before = [r.version for r in releases if r.parsed < target][-count // 2 - 1:]
    after = [r.version for r in releases if r.parsed > target][: count // 2 + 1]
    return before + after


def upload_time(version: str, releases: list[Release]) -> str:
    return next((r.uploaded for r in releases if r.version == version), "")
