"""The plan-and-run API that both faces (the ``compat`` command and the pytest plugin) call.

Neither face has logic of its own: they parse options, call these functions, and present the results. A matrix run is
``prepare`` (``plan.make_plan``); ``survey``, ``bisect`` and ``check`` are runs over one library's releases
(``plan.plan_for``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from packaging.version import Version

from compat import PACKAGE_ROOT
from compat.host.bisect import change_points
from compat.host.environments import EnvironmentBuilder
from compat.host.history import changes, load_report
from compat.host.install_checks import try_install
from compat.host.locate import describe, find_cache, find_matrix
from compat.host.matrix import LibrarySpec, Matrix, VersionSelector, parse_selector
from compat.host.matrix_file import load_matrix
from compat.host.outcome import CellResult
from compat.host.pipconfig import read_index_settings
from compat.host.plan import Cell, Plan, library_named, make_plan, plan_for
from compat.host.registry import fetch_releases, select, upload_time
from compat.host.report import build_report, counts, write_report
from compat.host.report.reading import lead_sentence, unreleased_lead
from compat.host.runner import Run, RunOptions
from compat.host.store import default_cache_dir
from compat.host.survey import ChangePoint, find_changes, signature
from compat.host.upgrade import CARRIED, Upgrade, evidence_releases, write_upgraded
from compat.host.user import (
    UserCheckpoint,
    read_constructor_arguments,
    refuse_unloadable,
    user_checkpoint,
    user_library,
)
from compat.host.verdicts import RED
from compat.shared.errors import CompatError

__all__ = ["Bisection", "Change", "RunOutcome", "Session", "UserCheckpoint", "bisect", "check", "default_cache_dir",
           "prepare", "read_constructor_arguments", "report_for", "run_and_report", "survey",
           "upgrade", "user_checkpoint"]


@dataclass
class Session:
    matrix: Matrix
    plan: Plan
    run: Run
    cache_dir: Path
    shard: tuple[int, int] | None = None
    installs: Future | None = None  # the install checks, once started (``start_installs``)

    @property
    def matrix_digest(self) -> str:
        """Identifies the matrix a report came from, so shard reports of different matrices are never merged."""
        return hashlib.sha256(self.matrix.path.read_bytes()).hexdigest()[:16]


def prepare(matrix_path: Path | str | None = None, cache_dir: Path | None = None,
            select: list[str] | None = None, shard: tuple[int, int] | None = None,
            options: RunOptions | None = None, unreleased: bool = False, artifacts: Path | None = None) -> Session:
    """Find the matrix and cache, resolve the plan (building unreleased versions' wheels) and set up the run.
    ``unreleased`` keeps the cells unreleased versions read; ``artifacts`` is a store of release artifacts."""
    matrix_choice = find_matrix(matrix_path)
    cache_choice = find_cache(matrix_choice.path, cache_dir)
    options = options or RunOptions()
    options.progress(describe(matrix_choice, cache_choice))
    cache_dir = cache_choice.path
    matrix = load_matrix(matrix_choice.path)
    index = read_index_settings()
    plan = make_plan(matrix, cache_dir, index, select, shard, unreleased)
    builder = EnvironmentBuilder(cache_dir, index)
    return Session(matrix, plan, Run(plan, builder, cache_dir, options, artifacts=artifacts), cache_dir, shard)


def survey(library_name: str, spec: str | None, matrix_path: Path | str | None = None,
           cache_dir: Path | None = None, grid: int = 16, options: RunOptions | None = None,
           ) -> tuple[list[ChangePoint], int, list[str]]:
    """Change points of a library's layout/outputs across the releases in ``spec`` (default: all stable ones), as
    saved (no conversion is searched: a rename is a change point)."""
    options = dataclasses.replace(options or RunOptions(), search=False)
    matrix_path = find_matrix(matrix_path).path
    cache_dir = (cache_dir or default_cache_dir(matrix_path)).resolve()
    matrix = load_matrix(matrix_path)
    library = library_named(matrix, library_name)
    index = read_index_settings()
    plan, versions = plan_for(matrix, library, (VersionSelector("range", spec or ">=0", "all", "--range"),), index,
                              cache_dir)
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


def bisect(library_name: str | None, recipe: str | None, good: str | None, bad: str,
           matrix_path: Path | str | None = None, cache_dir: Path | None = None, options: RunOptions | None = None,
           checkpoint: UserCheckpoint | None = None) -> Bisection:
    """Every release from ``good`` up to ``bad`` where a checkpoint saved with ``good`` (the recipe's, or the user's
    own ``checkpoint``) is read with another verdict than by the release before it, as saved: no conversion is
    searched (where a checkpoint stops loading is the question; ``check`` says what converts)."""
    options = dataclasses.replace(options or RunOptions(), search=False)
    matrix_path = find_matrix(matrix_path).path
    cache_dir = (cache_dir or default_cache_dir(matrix_path)).resolve()
    matrix = load_matrix(matrix_path)
    index = read_index_settings()
    if checkpoint is not None:
        library, matrix, recipe, user = user_library(matrix, checkpoint)
        good = good or checkpoint.saved_with
    else:
        library, user = library_named(matrix, library_name), None
        if recipe not in library.recipes:
            raise CompatError(f"{matrix.path}: {library.name} has no recipe {recipe!r} (it has: "
                              f"{', '.join(library.recipes)})")
    if not good:
        raise CompatError("give --good (the release that saved the checkpoint)")
    releases = fetch_releases(library.package, index.index_url, cache_dir)
    good, bad = _one_version(releases, good, "--good"), _one_version(releases, bad, "--bad")
    # the release that changed the behaviour, not the one a conversion rule papers over
    library = dataclasses.replace(library, rules=())
    plan, versions = plan_for(matrix, library, (VersionSelector("range", f">={good},<={bad}", "all", "--good/--bad"),
                                                VersionSelector("exact", good), VersionSelector("exact", bad)),
                              index, cache_dir, lambda found: [Cell(library.name, recipe, good, v) for v in found])
    run = Run(plan, EnvironmentBuilder(cache_dir, index), cache_dir, options, user=user)
    results: dict[str, CellResult] = {}

    def verdict_of(version: str) -> str:
        (results[version],) = run.execute({(library.name, version)})
        if version == good and user is not None:
            refuse_unloadable(run, library.name, good, recipe)
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


MATRIX_RELEASES = ("exact", "latest", "range")  # the selectors of a matrix's versions that name registry releases


def check(checkpoint: UserCheckpoint, against: list[str], matrix_path: Path | str | None = None,
          cache_dir: Path | None = None, options: RunOptions | None = None) -> tuple[Run, list[CellResult]]:
    """Load a user's own checkpoint in each release that ``against`` names (versions, ``latest``, ranges), against
    its outputs in the release it was saved with; where a release refuses it, the conversion search runs."""
    return _check(checkpoint, lambda library: _selectors(against, "--against"), matrix_path, cache_dir, options)


def _check(checkpoint: UserCheckpoint, targets: Callable[[LibrarySpec], tuple[VersionSelector, ...]],
           matrix_path: Path | str | None, cache_dir: Path | None,
           options: RunOptions | None) -> tuple[Run, list[CellResult]]:
    matrix_path = find_matrix(matrix_path).path
    cache_dir = (cache_dir or default_cache_dir(matrix_path)).resolve()
    library, matrix, recipe, user = user_library(load_matrix(matrix_path), checkpoint)
    index = read_index_settings()
    releases = fetch_releases(library.package, index.index_url, cache_dir)
    saved_with = _one_version(releases, checkpoint.saved_with, "--saved-with")
    selectors = (VersionSelector("exact", saved_with),) + targets(library)
    builder = EnvironmentBuilder(cache_dir, index)

    def run_with(evidence: list[str]) -> tuple[Run, list[CellResult]]:
        """The check, with ``evidence``: releases that produce (their recorded defaults) but are not targets."""
        plan, _ = plan_for(matrix, library, selectors + tuple(VersionSelector("exact", v) for v in evidence), index,
                           cache_dir, lambda found: [Cell(library.name, recipe, saved_with, v) for v in found
                                                     if v not in evidence])
        run = Run(plan, builder, cache_dir, options, user=user)
        results = run.execute()
        refuse_unloadable(run, library.name, saved_with, recipe)
        return run, results

    run, results = run_with([])
    evidence = evidence_releases(results, run.candidates.new_arguments, _matrix_releases(library, releases),
                                 run.plan.versions(library.name), saved_with)
    return run_with(evidence) if evidence else (run, results)


def _matrix_selectors(library: LibrarySpec) -> tuple[VersionSelector, ...]:
    """The selectors of the matrix's versions for ``library`` that name registry releases (exact, latest, ranges)."""
    return tuple(s for s in library.versions if s.kind in MATRIX_RELEASES)


def _matrix_releases(library: LibrarySpec, releases) -> list[str]:
    """The releases the matrix lists for ``library``."""
    return select(_matrix_selectors(library), releases)[0]


NEWEST_EXACT = "newest-exact"


def upgrade(checkpoint: UserCheckpoint, to: str, out: Path, matrix_path: Path | str | None = None,
            cache_dir: Path | None = None, options: RunOptions | None = None, accept_lossy: bool = False) -> Upgrade:
    """Rewrite a user's checkpoint for release ``to`` (a version, ``latest``, or ``newest-exact``: the newest of the
    matrix's releases of the library, from the one it was saved with on, that it reaches exactly), only after
    ``check`` verified that it loads there with the same outputs as in the release it was saved with (with the
    conversion that made them agree, if any); otherwise write nothing (``Upgrade.written`` is None;
    ``what_is_lost`` says why), unless ``accept_lossy`` and the best conversion found loads there (``lossy``)."""
    if to == NEWEST_EXACT:
        _, results = _check(checkpoint, _matrix_selectors, matrix_path, cache_dir, options)
        newer = [r for r in results if Version(r.cell.consumer) >= Version(r.cell.producer)]
        reached = [r for r in newer if r.verdict in CARRIED]
        if not reached:
            raise CompatError(f"{checkpoint.path}: no release of the matrix reads it exactly, not even "
                              f"{checkpoint.saved_with}")
        best = max(reached, key=lambda r: Version(r.cell.consumer))
        return dataclasses.replace(write_upgraded(checkpoint, best, out), checked=newer)
    _, results = check(checkpoint, [to], matrix_path, cache_dir, options)
    targets = [r for r in results if r.cell.consumer != r.cell.producer] or results  # check also reloads at home
    if len(targets) != 1:
        raise CompatError(f"--to: expected one release, got {to!r} ({len(targets)} releases)")
    home = next((r for r in results if r.cell.consumer == r.cell.producer), None)
    if home is not None and home.verdict not in ("identical", "equivalent"):
        raise CompatError(f"{checkpoint.path}: it does not load in {home.cell.producer}, the release it was saved "
                          f"with: {home.summary}")
    return write_upgraded(checkpoint, targets[0], out, accept_lossy)


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


def report_for(session: Session, results: list[CellResult], baseline: dict | None = None,
               installs: list[dict] | None = None) -> dict:
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
    report["uninstallable"] = installs or []
    if baseline is not None:
        report["changes"] = changes(baseline, report)
    return report


def start_installs(session: Session) -> None:
    """Begin the plan's install checks (releases declared uninstallable) in the background, once per session: they
    wait on the network and uv, not on the cores, so they run beside the cells."""
    with _INSTALLS_LOCK:
        if session.installs is None:
            session.installs = ThreadPoolExecutor(max_workers=1).submit(_try_all_installs, session)


def try_installs(session: Session) -> list[dict]:
    """The install checks' outcomes (started now if they were not)."""
    start_installs(session)
    return session.installs.result()


def _try_all_installs(session: Session) -> list[dict]:
    checks = session.plan.install_checks
    if not checks:
        return []
    with ThreadPoolExecutor(max_workers=session.run.options.build_jobs) as pool:
        return list(pool.map(lambda check: try_install(check, session.run.builder), checks))


_INSTALLS_LOCK = threading.Lock()


@dataclass
class RunOutcome:
    """What ``compat run`` says when it is done: the verdict counts, how many cells are red and not declared, where
    the report is, and whether it is the previous run's report (nothing it depends on changed)."""

    counts: dict[str, int]
    red: int
    folder: Path
    unchanged: bool = False
    lead: list[str] = dataclasses.field(default_factory=list)  # what unreleased versions break, first


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
            return RunOutcome(previous["counts"], previous["red"], out, True, previous.get("lead", []))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    baseline = load_report(baseline_path) if baseline_path else None
    start_installs(session)
    results = session.run.execute()
    installs = try_installs(session)
    report = report_for(session, results, baseline, installs)
    write_report(report, out)
    cells = report["cells"]
    lead = [lead_sentence(entry) for entry in unreleased_lead(cells, report["environments"])]
    stale_installs = sum(1 for outcome in installs if outcome["installs"])
    outcome = RunOutcome(counts(cells), sum(1 for r in results if r.verdict in RED or r.stale_known_break)
                         + stale_installs, out, lead=lead)
    complete = all(r.verdict != "error" for r in results)  # errors are retried, so such a report is not reused
    if complete:
        memo.write_text(json.dumps({"key": key, "counts": outcome.counts, "red": outcome.red, "lead": lead}))
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
    digest.update(json.dumps([session.plan.matrix.path.name, session.shard, session.run.options.search]).encode())
    for cell in session.plan.cells:
        digest.update(f"{cell.id}|{session.run.result_path(cell).name}|".encode())
    for check in session.plan.install_checks:
        digest.update(f"{check.id}|{session.run.builder.key(check.request)}|".encode())
    return digest.hexdigest()
