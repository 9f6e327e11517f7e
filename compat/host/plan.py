"""From a validated matrix to a plan: concrete versions, one environment request per release, and the cells.

A cross-load cell is (library, recipe, producer version, consumer version). Every pair is a cell, including a
release with itself (the save/load round trip, which must be ``identical``).
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from packaging.version import Version

from compat.host.environments import EnvRequest, find_uv
from compat.host.install_checks import InstallCheck, install_checks
from compat.host.matrix import LibrarySpec, Matrix, VersionSelector
from compat.host.pipconfig import IndexSettings
from compat.host.recipe_index import available_recipes
from compat.host.registry import Release, fetch_releases, select, upload_time
from compat.host.sources import SOURCE_KINDS, Source, resolve_source
from compat.host.store import Store
from compat.shared.errors import CompatError, MatrixError, RegistryError


@dataclass(frozen=True, order=True)
class Cell:
    library: str
    recipe: str
    producer: str
    consumer: str

    @property
    def id(self) -> str:
        return f"{self.library}/{self.recipe}/{self.producer}->{self.consumer}"


@dataclass
class EnvPlan:
    library: LibrarySpec
    version: str
    request: EnvRequest

    @property
    def name(self) -> str:
        return f"{self.library.name}=={self.version}"


@dataclass
class Plan:
    matrix: Matrix
    envs: dict[tuple[str, str], EnvPlan]
    cells: list[Cell]
    releases: dict[str, list[Release]] = field(default_factory=dict)
    sources: dict[tuple[str, str], Source] = field(default_factory=dict)  # unreleased versions, by (library, version)
    install_checks: list[InstallCheck] = field(default_factory=list)  # releases declared uninstallable, to try

    def versions(self, library: str) -> list[str]:
        return [v for (lib, v) in self.envs if lib == library]

    def unreleased(self, library: str, version: str) -> bool:
        return (library, version) in self.sources


def env_plans(library: LibrarySpec, versions: list[str], releases: list[Release]) -> dict[tuple[str, str], EnvPlan]:
    """One environment request per release: the release, the matrix's pins for it, and its upload time."""
    return {(library.name, v): EnvPlan(library, v, EnvRequest(library.name, library.package, v, library.pins_for(v),
                                                               upload_time(v, releases))) for v in versions}


def source_plans(library: LibrarySpec, sources: list[Source]) -> dict[tuple[str, str], EnvPlan]:
    """One environment request per unreleased version: its wheel, with the newest dependencies it accepts."""
    return {(library.name, s.version): EnvPlan(library, s.version, EnvRequest(
        library.name, library.package, s.version, library.pins_for(s.version), wheel=s.wheel, digest=s.digest,
        problem=s.problem)) for s in sources}


def resolve_sources(library: LibrarySpec, cache_dir: Path, index: IndexSettings) -> tuple[list[Source], list[str]]:
    """The library's unreleased versions, built (or found) as wheels; two with one name are a problem."""
    selectors = [s for s in library.versions if s.kind in SOURCE_KINDS]
    if not selectors:
        return [], []
    uv = find_uv()
    sources = [resolve_source(s, library.package, Store(cache_dir), index, uv) for s in selectors]
    named: dict[str, Source] = {}
    problems = []
    for selector, source in zip(selectors, sources):
        if source.version in named:
            problems.append(f"{selector.where}: {source.location} and {named[source.version].location} are both "
                            f"{source.version} (libraries.{library.name}.versions)")
        named[source.version] = source
    return sources, problems


def library_named(matrix: Matrix, name: str) -> LibrarySpec:
    """The matrix's library ``name``, or an error naming what it has (or why its recipes cannot be read)."""
    if name not in matrix.libraries:
        raise CompatError(f"{matrix.path}: no library {name!r} (it has: {', '.join(matrix.libraries)})")
    if matrix.libraries[name].fixtures_problem:
        raise CompatError(matrix.libraries[name].fixtures_problem)
    return matrix.libraries[name]


def plan_for(matrix: Matrix, library: LibrarySpec, selectors: tuple[VersionSelector, ...], index: IndexSettings,
             cache_dir: Path, cells: Callable[[list[str]], list[Cell]] = lambda versions: []) -> tuple[Plan, list[str]]:
    """A plan over one library's releases that ``selectors`` name (one error naming every one that does not exist),
    with ``cells(versions)``: what ``survey``, ``bisect`` and ``check`` run. ``library`` may differ from the matrix's
    (a user's one recipe, no conversion rules); the plan's matrix holds it."""
    releases = fetch_releases(library.package, index.index_url, cache_dir)
    versions, problems = select(selectors, releases)
    if problems:
        raise CompatError("; ".join(problems))
    matrix = dataclasses.replace(matrix, libraries={**matrix.libraries, library.name: library})
    return Plan(matrix, env_plans(library, versions, releases), cells(versions), {library.name: releases}), versions


def make_plan(matrix: Matrix, cache_dir: Path, index: IndexSettings,
              select_cells: list[str] | None = None, shard: tuple[int, int] | None = None,
              unreleased: bool = False) -> Plan:
    """Resolve every library's version selectors against the registry (and build its unreleased versions) and lay
    out the cells.

    ``select_cells`` keeps cells whose id matches any of the glob patterns (or contains the text); ``unreleased``
    keeps the cells an unreleased version reads (what a pull request's CI asks: does the new code still read every
    release's checkpoints?).
    """
    envs: dict[tuple[str, str], EnvPlan] = {}
    sources: dict[tuple[str, str], Source] = {}
    checks: list[InstallCheck] = []
    cells: list[Cell] = []
    releases_by_library = {}
    problems = []
    for library in matrix.libraries.values():
        problems += recipe_problems(library, cache_dir)
        try:
            releases = fetch_releases(library.package, index.index_url, cache_dir)
        except RegistryError as exc:
            problems.append(f"{matrix.path}: libraries.{library.name}: {exc}")
            continue
        releases_by_library[library.name] = releases
        versions, missing = select(library.versions, releases)
        problems += [f"{m} (libraries.{library.name}.versions)" for m in missing]
        envs.update(env_plans(library, versions, releases))
        checks += install_checks(library, releases, versions)
        built, duplicated = resolve_sources(library, cache_dir, index)
        problems += duplicated
        envs.update(source_plans(library, built))
        sources.update({(library.name, s.version): s for s in built})
        versions = sorted({*versions, *(s.version for s in built)}, key=Version)
        cells += [Cell(library.name, recipe, producer, consumer)
                  for recipe, spec in library.recipes.items() for producer in versions for consumer in versions
                  if producer == consumer or not spec.probe]
    if problems:
        raise MatrixError(problems)
    if unreleased:
        cells, checks = [c for c in cells if (c.library, c.consumer) in sources], []
        if not cells:
            raise CompatError(f"{matrix.path}: --unreleased: the matrix has no unreleased version (a path, git, "
                              f"wheel or sdist entry under a library's versions)")
    if select_cells:
        cells = [c for c in cells if any(_matches(c.id, pattern) for pattern in select_cells)]
        checks = [c for c in checks if any(_matches(c.id, pattern) for pattern in select_cells)]
    if shard:  # by consumer environment, so that each environment is checked in exactly one shard
        index_, count = shard
        consumers = sorted({(c.library, c.consumer) for c in cells})
        mine = {key for n, key in enumerate(consumers) if n % count == index_ - 1}
        cells = [c for c in cells if (c.library, c.consumer) in mine]
        checks = [c for n, c in enumerate(checks) if n % count == index_ - 1]
    return Plan(matrix, envs, cells, releases_by_library, sources, checks)


def recipe_problems(library: LibrarySpec, cache_dir: Path) -> list[str]:
    """A recipe the matrix names that its fixtures module does not have (with the nearest names), or a module that
    cannot be imported: validation errors, before any environment is built."""
    if library.fixtures_problem:
        return [library.fixtures_problem]
    try:
        available = available_recipes(library.fixtures, cache_dir)
    except CompatError as exc:
        return [f"libraries.{library.name}.fixtures: {exc}"]
    problems = []
    for name, spec in library.recipes.items():
        if name not in available:
            near = difflib.get_close_matches(name, list(available), n=1)
            hint = f"did you mean {near[0]!r}? " if near else ""
            problems.append(f"{spec.where}: libraries.{library.name}.recipes: no recipe {name!r} in "
                            f"{library.fixtures} ({hint}it has: {', '.join(available)})")
    return problems


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n), with 1 <= i <= n."""
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and 1 <= int(index) <= int(count)):
        raise CompatError(f"shard: expected i/n with 1 <= i <= n, such as 1/4, got {text!r}")
    return int(index), int(count)


def _matches(cell_id: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(cell_id, pattern) if any(ch in pattern for ch in "*?[") else pattern in cell_id
