"""Run a plan: build environments, one worker per environment, produce then consume, judge every cell.

Scheduling. Every consumer needs every producer's artifacts, so production must finish everywhere before consumption
starts anywhere. To keep one process per environment, a worker that has produced stays alive (idle, ~250 MB) until all
producers are done, then consumes. At most ``jobs`` workers are busy at once; idle workers beyond a memory budget are
closed and started again for consumption (one extra import, never a deadlock).

Caching. Artifacts are keyed by (environment, recipe code, compat's worker code); cell findings by (consumer
environment, producer artifact, code). A cell whose findings exist is not run again, so a rerun with nothing changed
spawns nothing, and an interrupted run resumes where it stopped. Errors are not cached: they are retried.
"""

from __future__ import annotations

import functools
import json
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from compat.host.artifact_store import ArtifactStore, ReleaseArtifacts
from compat.host.candidates import Candidates
from compat.host.environments import Environment, EnvironmentBuilder
from compat.host.outcome import CellResult, RunStats
from compat.host.plan import Cell, Plan
from compat.host.recipe_index import code_hash
from compat.host.results import ResultIndex
from compat.host.scheduling import OrderedSlots, available_mb, may_stay_idle
from compat.host.store import Store, file_lock, rule_text
from compat.host.verdicts import best_searched, judge
from compat.host.wording import counted
from compat.host.worker_process import WorkerFailure, WorkerProcess, missing_dependency_hint
from compat.shared.errors import CompatError

EnvKey = tuple[str, str]  # (library, version)


@dataclass
class RunOptions:
    jobs: int = 2
    threads: int = 1
    build_jobs: int = 3
    memory_mb: int | None = None
    idle_budget_mb: float | None = None
    timeout: float | None = None
    search: bool = True  # try a conversion for cells whose keys do not fit (search.py)
    progress: Callable[[str], None] = field(default=lambda message: print(message, file=sys.stderr, flush=True))


def check_in_stages(known: Callable[[], list[tuple]], check: Callable[[list[tuple], bool], None]) -> list[tuple]:
    """Check the search's candidates stage by stage, and return every entry checked. Each stage is known only once
    the one before was checked (``Candidates.retries``), so ask ``known()`` (entries ``(cell, rule, path)`` without a
    finding yet) again after each ``check(todo, first)`` until a round brings nothing new; an entry checked once and
    still without a finding (its worker failed) is not checked again. How many stages there are is the candidates'
    business alone."""
    checked: list[tuple] = []
    paths: set[Path] = set()
    while todo := [entry for entry in known() if entry[2] not in paths]:
        check(todo, not checked)
        checked += todo
        paths.update(entry[2] for entry in todo)
    return checked


class Run:
    def __init__(self, plan: Plan, builder: EnvironmentBuilder, cache_dir: Path, options: RunOptions | None = None,
                 user: dict | None = None, rules: dict[Cell, dict] | None = None, artifacts: Path | None = None):
        """``user`` (``{"name", "config", "checkpoint"}``) adds a recipe for a user's own checkpoint; ``rules``
        gives cells a conversion rule (``RuleSet`` data) applied before loading, over the matrix's own rules;
        ``artifacts`` is a store of release artifacts (``artifact_store.py``), read and added to."""
        self.plan, self.builder, self.cache_dir, self.user = plan, builder, cache_dir, user
        self.store = Store(Path(cache_dir))
        self.rules = rules or {}
        self.options = options or RunOptions()
        self.env_keys = {key: builder.key(env.request) for key, env in plan.envs.items()}
        self.code = {name: code_hash(lib.fixtures) for name, lib in plan.matrix.libraries.items()}
        self.stored = ReleaseArtifacts(ArtifactStore(artifacts), plan.unreleased, self.code) \
            if artifacts and not user else None
        self.results = ResultIndex(cache_dir)
        self.env_errors: dict[EnvKey, str] = {}
        self.worker_errors: dict[EnvKey, str] = {}
        self.environments: dict[EnvKey, Environment] = {}
        self.stats = RunStats()
        self.candidates = Candidates(plan, self.results, self.artifact_dir, self._result_path, self.rule_for,
                                     self.options.search)
        self._done: set[EnvKey] = set()
        self._condition = threading.Condition()
        self._busy = OrderedSlots(max(1, self.options.jobs))
        libraries = list(plan.matrix.libraries)
        self._order = {key: (libraries.index(key[0]), index) for index, key in enumerate(sorted(plan.envs))}
        self._building = threading.Semaphore(max(1, self.options.build_jobs))
        self._idle_mb = 0.0
        self._peak_mb = 0.0  # the largest resident memory any worker has reached
        self._consumers = self._finished = 0  # consumer environments to check, and checked so far (for progress)
        self._lock = threading.Lock()

    # -- where things live --------------------------------------------------------------------------------------
    @functools.lru_cache(maxsize=None)  # noqa: B019 - one Run per plan; the cache lives as long as it does
    def artifact_dir(self, library: str, version: str, recipe: str) -> Path:
        stored = self.stored and self.stored.stored(library, version, recipe)
        if stored:
            return stored.folder
        return self.store.artifact(library, version, recipe, self.env_keys[(library, version)], self.code[library])

    def stored_problem(self, library: str, version: str, recipe: str) -> str | None:
        """Why the store's artifact for this release and recipe cannot be used (its cells are errors)."""
        return self.stored.problems.get((library, version, recipe)) if self.stored else None

    @functools.lru_cache(maxsize=None)  # noqa: B019
    def result_path(self, cell: Cell) -> Path:
        return self._result_path(cell, self.rule_for(cell))

    def _result_path(self, cell: Cell, rule: dict | None) -> Path:
        stored = self.stored and self.stored.stored(cell.library, cell.producer, cell.recipe)
        artifact = stored.identity if stored else self.artifact_dir(cell.library, cell.producer, cell.recipe).name
        return self.store.result(cell.library, cell.recipe, self.env_keys[(cell.library, cell.consumer)], artifact,
                                 self.code[cell.library], rule_text(rule))

    def search_rule(self, cell: Cell) -> dict | None:
        """The conversion the search tries for ``cell`` (``candidates.Candidates.rule``)."""
        return self.candidates.rule(cell)[0]

    def searched(self, cell: Cell) -> list[tuple[dict, Path]]:
        """The search's candidates for ``cell`` known so far, each with where its finding is kept: the first, then
        the second ones (``Candidates.retries``) once the first one's finding says they are worth trying, the third
        and fourth once the ones before were checked."""
        first = self.search_rule(cell)
        tried = ([first] if first is not None else []) + self.candidates.retries(cell)
        return [(rule, self._result_path(cell, rule)) for rule in tried]

    def _needs_search(self, cell: Cell, producing: set[EnvKey] | None = None) -> bool:
        """Whether the consumer must try a conversion for the cell; also when its evidence comes from a release
        ``producing`` in this run (decided in the consumer's turn, once every producer is done)."""
        lacking = self.candidates.rule(cell)[1]
        if producing and any((cell.library, version) in producing for version in lacking):
            return True
        return any(not self.results.has(cell.library, path) for _, path in self.searched(cell))

    def rule_for(self, cell: Cell) -> dict | None:
        if cell in self.rules:
            return self.rules[cell]
        declared = self.plan.matrix.libraries[cell.library].rule_for(cell.recipe, cell.producer, cell.consumer)
        return declared.rule if declared else None

    def _has_artifact(self, library: str, version: str, recipe: str) -> bool:
        return (self.artifact_dir(library, version, recipe) / "manifest.json").is_file()

    # -- the run --------------------------------------------------------------------------------------------------
    def execute(self, consumers: set[EnvKey] | None = None) -> list[CellResult]:
        started = time.perf_counter()
        cells = [c for c in self.plan.cells if consumers is None or (c.library, c.consumer) in consumers]
        produce: dict[EnvKey, list[str]] = {}
        consume: dict[EnvKey, list[Cell]] = {}
        wanted = [((c.library, c.producer), c.recipe) for c in cells] + sorted(self.candidates.evidence(cells))
        for producer, recipe in dict.fromkeys(wanted):  # in the cells' order, each once
            if not self._has_artifact(*producer, recipe) and not self.stored_problem(*producer, recipe):
                produce.setdefault(producer, []).append(recipe)
        producing = set(produce)
        for cell in cells:
            if not self.results.has(cell.library, self.result_path(cell)) or self._needs_search(cell, producing):
                consume.setdefault((cell.library, cell.consumer), []).append(cell)
        # threads start in the order they take busy slots: the first ones to arrive take free slots unopposed
        active = sorted(set(produce) | set(consume), key=lambda key: self._order[key])
        self._consumers, self._finished = len(consume), 0
        self._done = {key for key in self.plan.envs if key not in produce}
        if active:
            to_check = sum(map(len, consume.values()))
            self.options.progress(f"compat: {counted(len(active), 'environment')} to run, "
                                  f"{counted(to_check, 'cell')} to check, {counted(len(cells), 'cell')} in all")
        threads = [threading.Thread(target=self._env_job, args=(key, produce.get(key, []), consume.get(key, [])),
                                    name=f"env {key}", daemon=True) for key in active]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.stats.seconds = time.perf_counter() - started
        judged = [self._judge(cell) for cell in cells]
        self.results.save()
        if self.stored:
            self.stored.keep({(c.library, c.producer, c.recipe) for c in cells}, self.artifact_dir)
        return judged

    def produce(self, keys: list[EnvKey], recipes: list[str]) -> dict[EnvKey, dict[str, dict]]:
        """Produce artifacts only (no cells), and return each release's manifests; a failed release gets none."""
        todo = {key: [r for r in recipes if not self._has_artifact(*key, r)] for key in keys}
        self._done = set(self.plan.envs)
        threads = [threading.Thread(target=self._env_job, args=(key, todo[key], []), daemon=True)
                   for key in keys if todo[key]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        manifests = {}
        for key in keys:
            manifests[key] = {}
            for recipe in recipes:
                path = self.artifact_dir(*key, recipe) / "manifest.json"
                manifests[key][recipe] = json.loads(path.read_text()) if path.is_file() else {"status": "error"}
        return manifests

    def _env_job(self, key: EnvKey, recipes: list[str], cells: list[Cell]) -> None:
        env_plan = self.plan.envs[key]
        worker = None
        try:
            with self._building:
                environment = self.builder.build(env_plan.request)
            with self._lock:
                self.environments[key] = environment
                self.stats.built += environment.fresh
            if recipes:
                # Another process (a pytest-xdist worker) may be producing the same artifacts: wait for it first.
                with file_lock(self.store.producing_lock(*key)):
                    todo = [r for r in recipes if not self._has_artifact(*key, r)]
                    if todo:
                        with self._busy.slot((self._order[key][0], 0, self._order[key][1])):
                            worker = self._spawn(key, environment)
                            self._produce(worker, key, todo)
                if worker is not None and cells and not self._keep_idle(worker):
                    worker.close()
                    worker = None
            self._mark_done(key)
            if cells:
                waits = {(c.library, c.producer) for c in cells} | {key for key, _ in self.candidates.evidence(cells)}
                with self._condition:
                    self._condition.wait_for(lambda: waits <= self._done)
                runnable = [c for c in cells if self._has_artifact(c.library, c.producer, c.recipe)]
                if runnable:
                    with self._busy.slot((self._order[key][0], 1, self._order[key][1])):
                        if worker is None:
                            worker = self._spawn(key, environment)
                        else:
                            self._release_idle(worker)
                        self._consume(worker, key, runnable)
        except WorkerFailure as exc:
            message = str(exc)
            if exc.missing_module:
                message = f"{missing_dependency_hint(env_plan.library.name, key[1], exc.missing_module)}\n{message}"
            self.worker_errors[key] = message
            self.options.progress(f"compat: {env_plan.name}: {message.splitlines()[0]}")
        except CompatError as exc:
            self.env_errors[key] = f"environment {env_plan.name} could not be built: {exc}"
            self.options.progress(f"compat: {env_plan.name}: build failed: {str(exc).splitlines()[0]}")
        except Exception as exc:  # noqa: BLE001 - a bug in one environment must not lose the run
            self.env_errors[key] = f"environment {env_plan.name}: {type(exc).__name__}: {exc}\n" \
                                   f"{traceback.format_exc(limit=-4)}"
        finally:
            self._mark_done(key)
            if worker is not None:
                worker.close()

    def _spawn(self, key: EnvKey, environment: Environment) -> WorkerProcess:
        library = self.plan.matrix.libraries[key[0]]
        worker = WorkerProcess(environment.python, library.import_name,
                               self.store.log(*key),
                               threads=self.options.threads, memory_mb=self.options.memory_mb,
                               timeout=self.options.timeout or library.timeout)
        with self._lock:
            self.stats.spawned += 1
            self.stats.import_seconds.append(worker.ready.get("import_seconds", 0.0))
            self.stats.add(key[0], "workers", 1)
            self.stats.add(key[0], "import", worker.ready.get("import_seconds", 0.0))
        return worker

    def _produce(self, worker: WorkerProcess, key: EnvKey, recipes: list[str]) -> None:
        library = self.plan.matrix.libraries[key[0]]
        command = {"cmd": "produce", "library": key[0], "version": key[1], "fixtures": str(library.fixtures),
                   "recipes": {r: str(self.artifact_dir(*key, r)) for r in recipes}, "user": self.user}
        produced: list[float] = []
        worker.send(command, f"producing {', '.join(recipes)} with {key[0]}=={key[1]}",
                    lambda event: produced.append(float(event.get("seconds", 0.0))) if event.get("event") ==
                    "produced" else None)
        with self._lock:
            self.stats.produced += len(recipes)
            self.stats.add(key[0], "produce", sum(produced))
        self.options.progress(f"compat: {key[0]}=={key[1]}: produced {counted(len(recipes), 'artifact')}")

    def _consume(self, worker: WorkerProcess, key: EnvKey, cells: list[Cell]) -> None:
        """Check the cells, then, in the same worker, the conversions the search proposes for those that refused."""
        unchecked = [cell for cell in cells if not self.results.has(cell.library, self.result_path(cell))]
        if unchecked:
            self._check(worker, key, [(cell, self.rule_for(cell), self.result_path(cell)) for cell in unchecked],
                        f"checking {counted(len(unchecked), 'cell')}")

        def known() -> list[tuple[Cell, dict, Path]]:
            return [(cell, rule, path) for cell in cells for rule, path in self.searched(cell)
                    if not self.results.has(cell.library, path)]

        def check(todo: list[tuple[Cell, dict, Path]], first: bool) -> None:
            attempt = "a conversion" if first else "more conversions"
            self._check(worker, key, todo, f"trying {attempt} for {counted(len(todo), 'cell')}")

        searched = check_in_stages(known, check)
        with self._lock:
            self.stats.consumed += len(unchecked)
            self.stats.searched += len(searched)
            self._finished += 1
            finished = self._finished
        searching = f", a conversion for {len(searched)}" if searched else ""
        checked = counted(len(unchecked), "cell")
        self.options.progress(f"compat: [{finished}/{self._consumers}] {key[0]}=={key[1]}: "
                              f"checked {checked}{searching}")

    def _check(self, worker: WorkerProcess, key: EnvKey, entries: list[tuple[Cell, dict | None, Path]],
               doing: str) -> None:
        """One consume command: each cell with the rule it is loaded under and where its finding goes."""
        library = self.plan.matrix.libraries[key[0]]
        completed = []

        def on_event(event: dict) -> None:
            if event.get("event") == "cell":
                completed.append(event["id"])

        command = {"cmd": "consume", "fixtures": str(library.fixtures), "user": self.user, "cells": [
            {"id": cell.id, "recipe": cell.recipe, "producer": cell.producer, "consumer": cell.consumer,
             "artifact": str(self.artifact_dir(cell.library, cell.producer, cell.recipe)),
             "result": str(path), "rule": rule} for cell, rule, path in entries]}
        for _, _, path in entries:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            worker.send(command, f"{doing} with {key[0]}=={key[1]}", on_event)
        except WorkerFailure as exc:
            stopped = entries[min(len(completed), len(entries) - 1)][0]
            raise WorkerFailure(f"{exc}\n(while checking {stopped.id})") from None
        consumed = sum(float((self.results.get(key[0], path) or {}).get("seconds", 0.0)) for _, _, path in entries)
        with self._lock:
            self.stats.add(key[0], "consume", consumed)

    def _keep_idle(self, worker: WorkerProcess) -> bool:
        """Keep a worker that has produced for consumption while what idle workers hold fits ``idle_budget_mb`` (a
        Flux probe peaks near 5 GB; idle workers that had taken that memory got two busy ones killed)."""
        available, rss = available_mb(), worker.rss_mb
        with self._lock:
            self._peak_mb = max(self._peak_mb, worker.peak_rss_mb)
            if not may_stay_idle(available, self._idle_mb, rss, self.options.jobs, self._peak_mb,
                                 self.options.idle_budget_mb):
                return False
            self._idle_mb += rss
            worker.idle_mb = rss
            return True

    def _release_idle(self, worker: WorkerProcess) -> None:
        with self._lock:
            self._idle_mb -= worker.idle_mb

    def _mark_done(self, key: EnvKey) -> None:
        with self._condition:
            self._done.add(key)
            self._condition.notify_all()

    # -- judging ----------------------------------------------------------------------------------------------------
    def _judge(self, cell: Cell) -> CellResult:
        library = self.plan.matrix.libraries[cell.library]
        finding = self._finding(cell)
        searched = best_searched([_with_rule(self.results.get(cell.library, path), rule)
                                  for rule, path in self.searched(cell)], library.recipes[cell.recipe])
        known = library.known_break(cell.recipe, cell.producer, cell.consumer)
        unreleased = (cell.library, cell.consumer) in self.plan.sources  # must read releases' files as saved
        judgement = judge(finding, library.recipes[cell.recipe], known, searched, search_decides=not unreleased)
        finding = judgement.finding or finding
        known_json = None if known is None else {
            "reason": known.reason, "link": known.link, "upstream": known.upstream, "declared_at": known.where}
        return CellResult(cell, judgement.verdict, judgement.underlying, judgement.summary, finding, known_json,
                          judgement.stale_known_break)

    def _finding(self, cell: Cell) -> dict:
        found = self.results.get(cell.library, self.result_path(cell))
        if found is not None:
            return found
        producer, consumer = (cell.library, cell.producer), (cell.library, cell.consumer)
        if self.stored_problem(*producer, cell.recipe):
            return {"status": "error", "reason": self.stored_problem(*producer, cell.recipe)}
        for key, role in ((producer, "producer"), (consumer, "consumer")):
            if key in self.env_errors:
                return {"status": "error", "reason": f"{role} {self.env_errors[key]}"}
        if producer in self.worker_errors and not self._has_artifact(*producer, cell.recipe):
            return {"status": "error", "reason": f"producer worker failed: {self.worker_errors[producer]}"}
        if consumer in self.worker_errors:
            return {"status": "error", "reason": f"consumer worker failed: {self.worker_errors[consumer]}"}
        return {"status": "error", "reason": "no finding was recorded for this cell"}

    def environment_records(self) -> dict[str, dict[str, dict]]:
        records: dict[str, dict[str, dict]] = {}
        for key, env_plan in self.plan.envs.items():
            environment = self.environments.get(key) or self.builder.cached(env_plan.request)
            record = environment.record() if environment else {"key": self.env_keys[key], "lock": {}}
            record["uploaded"] = env_plan.request.uploaded
            if key in self.plan.sources:
                record["source"] = self.plan.sources[key].record()
            if key in self.env_errors:
                record["error"] = self.env_errors[key]
            if key in self.worker_errors:
                record["worker_error"] = self.worker_errors[key]
            records.setdefault(key[0], {})[key[1]] = record
        return records


def _with_rule(finding: dict | None, rule: dict) -> dict | None:
    """A searched finding with the rule it was checked under: a consumer that could not even be built with the rule's
    arguments recorded none, and the cell's account must still say what was tried."""
    return finding if finding is None or finding.get("rule") else dict(finding, rule=rule)
