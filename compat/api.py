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

from compat import PACKAGE_ROOT
from compat.host.bisect import change_points
from compat.host.environments import EnvironmentBuilder
from compat.host.history import changes, load_report
from compat.host.matrix import (
    DEFAULT_TOLERANCE,
    LibrarySpec,
    Matrix,
    RecipeSpec,
    Tolerance,
    VersionSelector,
    default_matrix_path,
    load_matrix,
    parse_selector,
)
from compat.host.pipconfig import read_index_settings
from compat.host.plan import Cell, Plan, env_plans, make_plan
from compat.host.registry import fetch_releases, select, upload_time
from compat.host.renames import probable_renames
from compat.host.report import build_report, counts, write_report
from compat.host.runner import CellResult, Run, RunOptions
from compat.host.survey import ChangePoint, find_changes, signature
from compat.host.verdicts import RED
from compat.shared.checkpoint import PICKLE_SUFFIXES
from compat.shared.errors import CompatError
from compat.shared.stamp import read_stamp


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
class Change:
    """A release whose verdict differs from the release before it (among those bisection looked at)."""

    version: str
    uploaded: str
    before: str
    after: str
    result: CellResult


@dataclass
class Bisection:
    library: str
    recipe: str
    good: str
    bad: str
    candidates: int
    changes: list[Change]
    verdicts: dict
    environments_used: int


@dataclass
class UserCheckpoint:
    """A user's own checkpoint and what loading it needs: the library, the constructor arguments, the release it
    was saved with (a selector naming one release). ``path`` is a safetensors file (a pickle is converted first)."""

    path: Path
    library: str
    config: dict
    saved_with: str


def read_constructor_arguments(path: Path) -> dict:
    """A user's constructor arguments from a JSON or YAML file (within compat's limits for untrusted YAML)."""
    import yaml

    from compat.host.yamlsource import load_data

    try:
        config = load_data(Path(path), "constructor arguments")
    except yaml.YAMLError as exc:
        raise CompatError(f"{path}: cannot read the constructor arguments: {exc}") from None
    if not isinstance(config, dict) or not all(isinstance(key, str) for key in config):
        raise CompatError(f"{path}: expected a mapping of constructor arguments (names to values)")
    return config


def user_checkpoint(checkpoint: Path, library_name: str | None = None, config: dict | None = None,
                    saved_with: str | None = None, allow_pickle: bool = False) -> UserCheckpoint:
    """What is not given is read from the checkpoint's compat metadata (``compat.shared.stamp.save_stamped``). A pickle
    (``torch.save``) is read only with ``allow_pickle``, and then with ``torch.load(weights_only=True)``."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise CompatError(f"{checkpoint}: no such file")
    stamp: dict = {}
    if checkpoint.suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise CompatError(f"{checkpoint}: a pickle checkpoint; pass --allow-pickle to read it with "
                              "torch.load(weights_only=True)")
        from compat.host.keydiff import pickle_to_safetensors

        path = pickle_to_safetensors(checkpoint)
    else:
        path = checkpoint
        stamp = read_stamp(checkpoint)
    library_name = library_name or stamp.get("library")
    config = config if config is not None else stamp.get("config")
    saved_with = saved_with or stamp.get("version")
    for value, flag in ((library_name, "--library"), (config, "--recipe-config"), (saved_with, "--saved-with")):
        if not value:
            raise CompatError(f"{checkpoint}: give {flag} (the checkpoint's metadata does not record it)")
    if not isinstance(config, dict):
        raise CompatError(f"{checkpoint}: the constructor arguments must be a mapping, got {type(config).__name__}")
    return UserCheckpoint(path.resolve(), library_name, config, saved_with)


def bisect(library_name: str | None, recipe: str | None, good: str | None, bad: str,
           matrix_path: Path | str | None = None, cache_dir: Path | None = None, options: RunOptions | None = None,
           checkpoint: UserCheckpoint | None = None) -> Bisection:
    """Every release from ``good`` up to ``bad`` where a checkpoint saved with ``good`` (the recipe's, or the user's
    own ``checkpoint``) is read with another verdict than by the release before it."""
    cache_dir = (cache_dir or default_cache_dir()).resolve()
    matrix = load_matrix(matrix_path)
    index = read_index_settings()
    if checkpoint is not None:
        library, matrix, recipe, user = _user_library(matrix, checkpoint)
        good = good or checkpoint.saved_with
    else:
        library, user = _library(matrix, library_name), None
        if recipe not in library.recipes:
            raise CompatError(f"{matrix.path}: {library.name} has no recipe {recipe!r} (it has: "
                              f"{', '.join(library.recipes)})")
    if not good:
        raise CompatError("give --good (the release that saved the checkpoint)")
    releases = fetch_releases(library.package, index.index_url, cache_dir)
    good, bad = _one_version(releases, good, "--good"), _one_version(releases, bad, "--bad")
    versions, _ = _releases(library, (VersionSelector("range", f">={good},<={bad}", "all", "--good/--bad"),
                                      VersionSelector("exact", good), VersionSelector("exact", bad)), index, cache_dir)
    envs = env_plans(library, versions, releases)
    cells = [Cell(library.name, recipe, good, v) for v in versions]
    # the release that changed the behaviour, not the one a conversion rule papers over
    library = dataclasses.replace(library, rules=())
    matrix = dataclasses.replace(matrix, libraries={**matrix.libraries, library.name: library})
    plan = Plan(matrix, envs, cells, {library.name: releases})
    run = Run(plan, EnvironmentBuilder(cache_dir, index), cache_dir, options, user=user)
    results: dict[str, CellResult] = {}

    def verdict_of(version: str) -> str:
        (results[version],) = run.execute({(library.name, version)})
        if version == good and user is not None:
            _refuse_unloadable(run, library.name, good, recipe)
        return results[version].underlying

    try:
        positions, verdicts = change_points(versions, verdict_of)
    except ValueError as exc:
        raise CompatError(str(exc)) from None
    looked = [v for v in versions if v in verdicts]
    changes = []
    for position in positions:
        version = versions[position]
        before = next(v for v in reversed(looked) if versions.index(v) < position)
        changes.append(Change(version, upload_time(version, releases), verdicts[before], verdicts[version],
                              results[version]))
    return Bisection(library.name, recipe, good, bad, len(versions), changes, verdicts, len(verdicts))


def check(checkpoint: UserCheckpoint, against: list[str], matrix_path: Path | str | None = None,
          cache_dir: Path | None = None, options: RunOptions | None = None) -> tuple[Run, list[CellResult]]:
    """Load a user's own checkpoint in each release that ``against`` names (versions, ``latest``, ranges), against
    its outputs in the release it was saved with."""
    cache_dir = (cache_dir or default_cache_dir()).resolve()
    library, matrix, recipe, user = _user_library(load_matrix(matrix_path), checkpoint)
    index = read_index_settings()
    releases = fetch_releases(library.package, index.index_url, cache_dir)
    saved_with = _one_version(releases, checkpoint.saved_with, "--saved-with")
    versions, releases = _releases(library, (VersionSelector("exact", saved_with),)
                                   + _selectors(against, "--against"), index, cache_dir)
    envs = env_plans(library, versions, releases)
    cells = [Cell(library.name, recipe, saved_with, v) for v in versions]
    plan = Plan(matrix, envs, cells, {library.name: releases})
    builder = EnvironmentBuilder(cache_dir, index)
    run = Run(plan, builder, cache_dir, options, user=user)
    results = run.execute()
    _refuse_unloadable(run, library.name, saved_with, recipe)
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


def _user_library(matrix: Matrix, checkpoint: UserCheckpoint) -> tuple[LibrarySpec, Matrix, str, dict]:
    """The matrix reduced to the checkpoint's library, with one recipe: the user's model (named by a digest of the
    checkpoint and its constructor arguments, so its artifacts are cached apart from every other)."""
    library = _library(matrix, checkpoint.library)
    digest = hashlib.sha256(json.dumps(checkpoint.config, sort_keys=True).encode())
    with open(checkpoint.path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    recipe = f"user-{digest.hexdigest()[:12]}"
    library = dataclasses.replace(library, recipes={recipe: RecipeSpec(recipe, Tolerance(**DEFAULT_TOLERANCE))},
                                  known_breaks=())
    user = {"name": recipe, "config": checkpoint.config, "checkpoint": str(checkpoint.path)}
    return library, dataclasses.replace(matrix, libraries={library.name: library}), recipe, user


def _refuse_unloadable(run: Run, library: str, saved_with: str, recipe: str) -> None:
    """A checkpoint that its own release cannot build or load is a problem of the arguments given (a typo in the
    constructor arguments, the wrong --saved-with), not an incompatibility between releases."""
    path = run.artifact_dir(library, saved_with, recipe) / "manifest.json"
    manifest = json.loads(path.read_text()) if path.is_file() else {"status": "error", "reason": "no artifact"}
    if manifest["status"] == "error":
        return  # the environment failed: the cells say why
    if manifest["status"] != "ok":
        reason = " ".join(str(manifest.get("reason", "")).split("Traceback")[0].split())[:400]
        raise CompatError(f"the checkpoint does not load in {library}=={saved_with}, the release it was saved with "
                          f"({reason}); check the constructor arguments (--recipe-config) and --saved-with")


def _selectors(texts: list[str], flag: str) -> tuple[VersionSelector, ...]:
    selectors = []
    for text in texts:
        try:
            selectors.append(parse_selector(text, flag))
        except ValueError as exc:
            raise CompatError(f"{flag}: {exc}") from None
    return tuple(selectors)


def _one_version(releases: list, text: str, flag: str) -> str:
    """The one release a selector names (an exact version or ``latest``)."""
    versions, problems = select(_selectors([text], flag), releases)
    if problems:
        raise CompatError("; ".join(problems))
    if len(versions) != 1:
        raise CompatError(f"{flag}: {text!r} names {len(versions)} releases; give one (a version or 'latest')")
    return versions[0]


def infer_renames(finding: dict) -> dict[str, str] | None:
    """Producer key -> consumer key for every moved key, guessed from names; None unless every key is paired."""
    keys = finding.get("keys", {})
    missing, unexpected = keys.get("missing", []), keys.get("unexpected", [])
    pairs = probable_renames(keys)
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


def _library(matrix: Matrix, name: str) -> LibrarySpec:
    if name not in matrix.libraries:
        raise CompatError(f"{matrix.path}: no library {name!r} (it has: {', '.join(matrix.libraries)})")
    if matrix.libraries[name].fixtures_problem:
        raise CompatError(matrix.libraries[name].fixtures_problem)
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


@dataclass
class RunOutcome:
    """What ``compat run`` says when it is done: the verdict counts, how many cells are red and not declared, where
    the report is, and whether it is the previous run's report (nothing it depends on changed)."""

    counts: dict[str, int]
    red: int
    folder: Path
    unchanged: bool = False


REPORT_KEY = ".compat-report-key.json"


def run_and_report(session: Session, out: Path, baseline_path: Path | None = None) -> RunOutcome:
    """Run the plan and write the report; a rerun whose report would be the same (the same matrix, baseline, compat
    code and the same finding for every cell: findings are addressed by everything they depend on) keeps the report
    already in ``out`` and runs nothing, so it costs what planning costs, not what judging 15,000 cells does."""
    key = _report_key(session, baseline_path)
    memo = out / REPORT_KEY
    try:
        previous = json.loads(memo.read_text())
        if previous["key"] == key and (out / "report.json").is_file():
            return RunOutcome(previous["counts"], previous["red"], out, unchanged=True)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    baseline = load_report(baseline_path) if baseline_path else None
    results = session.run.execute()
    write_report(report_for(session, results, baseline), out)
    cells = [r.to_json() for r in results]
    outcome = RunOutcome(counts(cells), sum(1 for r in results if r.verdict in RED or r.stale_known_break), out)
    complete = all(r.verdict != "error" for r in results)  # errors are retried, so such a report is not reused
    if complete:
        memo.write_text(json.dumps({"key": key, "counts": outcome.counts, "red": outcome.red}))
    else:
        memo.unlink(missing_ok=True)
    return outcome


def _report_key(session: Session, baseline_path: Path | None) -> str:
    """Everything a run's report is a function of."""
    digest = hashlib.sha256(session.matrix.path.read_bytes())
    for path in sorted((PACKAGE_ROOT / "host").rglob("*.py")) + [PACKAGE_ROOT / "api.py"]:
        digest.update(path.read_bytes())
    if baseline_path:
        digest.update(Path(baseline_path).read_bytes())
    digest.update(json.dumps([session.plan.matrix.path.name, session.shard]).encode())
    for cell in session.plan.cells:
        digest.update(f"{cell.id}|{session.run.result_path(cell).name}|".encode())
    return digest.hexdigest()
