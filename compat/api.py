"""The plan-and-run API that both faces (the ``compat`` command and the pytest plugin) call.

Neither face has logic of its own: they parse options, call ``prepare`` and ``execute``, and present the results.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from compat.bisect import first_change
from compat.declare import renamed_pairs
from compat.environments import EnvironmentBuilder
from compat.errors import CompatError
from compat.history import changes
from compat.matrix import (DEFAULT_TOLERANCE, Matrix, RecipeSpec, Tolerance, VersionSelector, default_matrix_path,
                           load_matrix)
from compat.pipconfig import read_index_settings
from compat.plan import Cell, Plan, env_plans, make_plan
from compat.registry import fetch_releases, select, upload_time
from compat.report import build_report, write_report
from compat.runner import CellResult, Run, RunOptions
from compat.stamp import read_stamp
from compat.survey import ChangePoint, find_changes, signature


def default_cache_dir() -> Path:
    """``COMPAT_CACHE_DIR``, or ``.compat/`` inside the project."""
    return Path(os.environ.get("COMPAT_CACHE_DIR") or default_matrix_path().parent / ".compat").resolve()


@dataclass
class Session:
    matrix: Matrix
    plan: Plan
    run: Run
    cache_dir: Path
    shard: tuple[int, int] | None = None

    @property
    def matrix_digest(self) -> str:
        """Identifies the matrix a report came from, so shard reports of different matrices are never merged."""
        return hashlib.sha256(self.matrix.path.read_bytes()).hexdigest()[:16]


def prepare(matrix_path: Path | str | None = None, cache_dir: Path | None = None,
            select: list[str] | None = None, shard: tuple[int, int] | None = None,
            options: RunOptions | None = None) -> Session:
    cache_dir = (cache_dir or default_cache_dir()).resolve()
    matrix = load_matrix(matrix_path)
    index = read_index_settings()
    plan = make_plan(matrix, cache_dir, index, select, shard)
    builder = EnvironmentBuilder(cache_dir, index)
    return Session(matrix, plan, Run(plan, builder, cache_dir, options), cache_dir, shard)


def survey(library_name: str, spec: str | None, matrix_path: Path | str | None = None,
           cache_dir: Path | None = None, grid: int = 16, options: RunOptions | None = None,
           ) -> tuple[list[ChangePoint], int, list[str]]:
    """Change points of a library's layout/outputs across the releases in ``spec`` (default: all stable ones)."""
    cache_dir = (cache_dir or default_cache_dir()).resolve()
    matrix = load_matrix(matrix_path)
    library = _library(matrix, library_name)
    index = read_index_settings()
    versions, releases = _releases(library, (VersionSelector("range", spec or ">=0", "all", "--range"),), index,
                                   cache_dir)
    envs = env_plans(library, versions, releases)
    plan = Plan(matrix, envs, [], {library.name: releases})
    run = Run(plan, EnvironmentBuilder(cache_dir, index), cache_dir, options)

    def probe(batch: list[str]) -> dict[str, tuple]:
        manifests = run.produce([(library.name, v) for v in batch], list(library.recipes))
        return {version: signature(manifests[(library.name, version)]) for version in batch}

    changes, probed = find_changes(versions, probe, grid)
    return changes, probed, versions


@dataclass
class Bisection:
    library: str
    recipe: str
    good: str
    bad: str
    candidates: int
    first: str
    uploaded: str
    verdicts: dict
    result: CellResult
    environments_used: int


def bisect(library_name: str, recipe: str, good: str, bad: str, matrix_path: Path | str | None = None,
           cache_dir: Path | None = None, options: RunOptions | None = None) -> Bisection:
    """The first release after ``good`` (up to ``bad``) that reads ``good``'s checkpoint with another verdict."""
    cache_dir = (cache_dir or default_cache_dir()).resolve()
    matrix = load_matrix(matrix_path)
    library = _library(matrix, library_name)
    if recipe not in library.recipes:
        raise CompatError(f"{matrix.path}: {library_name} has no recipe {recipe!r} (it has: "
                          f"{', '.join(library.recipes)})")
    index = read_index_settings()
    versions, releases = _releases(library, (VersionSelector("exact", good, where="--good"),
                                             VersionSelector("exact", bad, where="--bad"),
                                             VersionSelector("range", f">={good},<={bad}", "all", "--good/--bad")),
                                   index, cache_dir)
    envs = env_plans(library, versions, releases)
    cells = [Cell(library.name, recipe, good, v) for v in versions]
    # the release that changed the behaviour, not the one a conversion rule papers over
    library = dataclasses.replace(library, rules=())
    matrix = dataclasses.replace(matrix, libraries={**matrix.libraries, library.name: library})
    plan = Plan(matrix, envs, cells, {library.name: releases})
    run = Run(plan, EnvironmentBuilder(cache_dir, index), cache_dir, options)
    results: dict[str, CellResult] = {}

    def verdict_of(version: str) -> str:
        (results[version],) = run.execute({(library.name, version)})
        return results[version].underlying

    try:
        position, verdicts = first_change(versions, verdict_of)
    except ValueError as exc:
        raise CompatError(str(exc)) from None
    first = versions[position]
    return Bisection(library.name, recipe, good, bad, len(versions), first, upload_time(first, releases), verdicts,
                     results[first], len(verdicts))


def check(checkpoint: Path, against: list[str], library_name: str | None = None, config: dict | None = None,
          saved_with: str | None = None, matrix_path: Path | str | None = None, cache_dir: Path | None = None,
          options: RunOptions | None = None) -> tuple[Run, list[CellResult]]:
    """Load a user's own checkpoint in each release of ``against``, against its outputs in ``saved_with``.

    What is not given is read from the checkpoint's compat metadata (``compat.stamp.save_stamped``).
    """
    stamp = read_stamp(checkpoint)
    library_name = library_name or stamp.get("library")
    config = config if config is not None else stamp.get("config")
    saved_with = saved_with or stamp.get("version")
    for value, flag in ((library_name, "--library"), (config, "--recipe-config"), (saved_with, "--saved-with")):
        if not value:
            raise CompatError(f"{checkpoint}: give {flag} (the checkpoint's metadata does not record it)")
    cache_dir = (cache_dir or default_cache_dir()).resolve()
    matrix = load_matrix(matrix_path)
    library = _library(matrix, library_name)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    with open(checkpoint, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    recipe = f"user-{digest.hexdigest()[:12]}"
    library = dataclasses.replace(library, recipes={recipe: RecipeSpec(recipe, Tolerance(**DEFAULT_TOLERANCE))},
                                  known_breaks=())
    matrix = dataclasses.replace(matrix, libraries={library.name: library})
    index = read_index_settings()
    versions, releases = _releases(library, tuple(VersionSelector("exact", v, where=flag) for v, flag in
                                                  [(saved_with, "--saved-with")] + [(v, "--against") for v in against]),
                                   index, cache_dir)
    envs = env_plans(library, versions, releases)
    cells = [Cell(library.name, recipe, saved_with, v) for v in versions]
    plan = Plan(matrix, envs, cells, {library.name: releases})
    builder = EnvironmentBuilder(cache_dir, index)
    user = {"name": recipe, "config": config, "checkpoint": str(Path(checkpoint).resolve())}
    run = Run(plan, builder, cache_dir, options, user=user)
    results = run.execute()
    # where keys moved, try the renames they suggest: a cell that then agrees is "converted", with the rule
    rules = {r.cell: {"rename": renames} for r in results
             if r.verdict == "incompatible" and (renames := infer_renames(r.finding))}
    if rules:
        retried = {r.cell: r for r in Run(plan, builder, cache_dir, options, user=user, rules=rules).execute(
            {(cell.library, cell.consumer) for cell in rules}) if r.cell in rules}
        for index_, result in enumerate(results):
            attempt = retried.get(result.cell)
            if attempt is not None and attempt.verdict == "converted":
                results[index_] = attempt
            elif attempt is not None:
                result.finding["rule_tried"] = {"rule": attempt.finding.get("rule"), "verdict": attempt.verdict,
                                                "summary": attempt.summary}
    return run, results


def infer_renames(finding: dict) -> dict[str, str] | None:
    """Producer key -> consumer key for every moved key, guessed from names; None unless every key is paired."""
    keys = finding.get("keys", {})
    missing, unexpected = keys.get("missing", []), keys.get("unexpected", [])
    pairs = renamed_pairs(unexpected, missing)
    if not missing or len(pairs) != len(missing) or len(pairs) != len(unexpected):
        return None
    return dict(pairs)


def _releases(library, selectors: tuple[VersionSelector, ...], index, cache_dir: Path) -> tuple[list[str], list]:
    """The versions the selectors name (or one error naming every one that does not exist), and all releases."""
    releases = fetch_releases(library.package, index.index_url, cache_dir)
    versions, problems = select(selectors, releases)
    if problems:
        raise CompatError("; ".join(problems))
    return versions, releases


def _library(matrix: Matrix, name: str):
    if name not in matrix.libraries:
        raise CompatError(f"{matrix.path}: no library {name!r} (it has: {', '.join(matrix.libraries)})")
    return matrix.libraries[name]


def report_for(session: Session, results: list[CellResult], baseline: dict | None = None) -> dict:
    stats = session.run.stats
    environments = session.run.environment_records()
    cells = []
    for result in results:
        cell = result.to_json()
        library = environments.get(cell["library"], {})
        # which environment each side ran in and how it was resolved; the full locks are under "environments"
        cell["environments"] = {side: {"key": library.get(cell[side], {}).get("key"),
                                       "strategy": library.get(cell[side], {}).get("strategy")}
                                for side in ("producer", "consumer")}
        cells.append(cell)
    report = build_report(cells, environments,
                        str(session.matrix.path), session.run.builder.torch_version,
                        {"seconds": round(stats.seconds, 2), "environments_built": stats.built,
                         "workers_spawned": stats.spawned, "artifacts_produced": stats.produced,
                         "cells_checked": stats.consumed},
                          session.matrix_digest, f"{session.shard[0]}/{session.shard[1]}" if session.shard else None)
    if baseline is not None:
        report["changes"] = changes(baseline, report)
    return report


def run_and_report(session: Session, out: Path, baseline: dict | None = None) -> tuple[list[CellResult], list[Path]]:
    results = session.run.execute()
    return results, write_report(report_for(session, results, baseline), out)
