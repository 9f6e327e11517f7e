"""pytest face of compat: the matrix file is collected as one test per cell.

Outcomes follow the verdict: identical / equivalent / converted pass; diverged / incompatible fail with the evidence;
known-break is a strict xfail, so a known break that no longer breaks fails (declarations never go stale);
not-applicable skips; error is a test error. Under pytest-xdist, cells carry an ``xdist_group`` mark per consumer
environment and the plugin asks for ``--dist loadgroup`` (one environment's cells in one process); whatever the
distribution, file locks in the cache make sure no environment is built, produced or checked twice.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from compat.api import Session, prepare, report_for, start_installs, try_installs
from compat.host.history import load_report, merge_files
from compat.host.install_checks import summary as install_summary
from compat.host.locate import CACHE_HELP, MATRIX_HELP, find_matrix
from compat.host.outcome import CellResult
from compat.host.plan import parse_shard
from compat.host.report import write_report
from compat.host.runner import RunOptions
from compat.host.store import file_lock
from compat.host.verdicts import BAD, GOOD
from compat.shared.errors import CompatError

SESSION = pytest.StashKey[Session]()
RESULTS = pytest.StashKey[dict]()  # cell id -> CellResult, for every cell this process has results for
RAN = pytest.StashKey[list]()  # ids of the cells whose tests ran in this process (its partial report)
STARTED = pytest.StashKey[float]()  # when this process was configured: partial reports older than it are stale
INSTALLS = pytest.StashKey[list]()  # outcomes of the install checks tried in this process


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("compat", "compat compatibility matrix")
    group.addoption("--compat-matrix", help=MATRIX_HELP)
    group.addoption("--compat-cache-dir", help=CACHE_HELP)
    group.addoption("--compat-report", help="write report.json/report.md/index.html for the cells run here")
    group.addoption("--compat-jobs", type=int, default=2, help="workers busy at once")
    group.addoption("--compat-timeout", type=float, help="seconds a worker may go without progress")
    group.addoption("--compat-unreleased", action="store_true",
                    help="only the cells unreleased versions (path, git, wheel, sdist entries) read")
    group.addoption("--compat-artifacts", help="a store of release artifacts: read instead of building releases, "
                    "and added to (see compat run --artifacts)")
    group.addoption("--compat-no-search", action="store_true",
                    help="do not search for a conversion where a release refuses a checkpoint's keys")
    group.addoption("--compat-shard", help="run shard i/n of the matrix (consumer environments split round-robin)")
    group.addoption("--compat-baseline", help="a previous report.json; --compat-report then leads with the changes")


def _matrix_path(config: pytest.Config) -> Path:
    option = config.getoption("compat_matrix")
    return Path(option).resolve() if option else find_matrix(start=config.invocation_params.dir).path


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's, which sends the options to its workers
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "compat_cell: a cell of the compat matrix")
    option = config.getoption("compat_matrix")
    if option:
        chosen = Path(option).resolve()
        config.option.compat_matrix = str(chosen)  # absolute, so that xdist workers find the same file
        default = find_matrix(start=config.invocation_params.dir).path
        config.args[:] = [a for a in config.args if Path(a.split("::")[0]).resolve() != default]
        if not any(Path(a.split("::")[0]).resolve() == chosen for a in config.args):
            config.args.append(str(chosen))
    if getattr(config.option, "numprocesses", None) and getattr(config.option, "dist", "no") in ("no", "load"):
        config.option.dist = "loadgroup"
    if getattr(config, "workerinput", {}).get("compat_loadgroup"):
        config.option.loadgroup = True  # xdist workers re-parse the command line; tell them to tag groups
    config.stash[STARTED] = time.time()
    config.stash[RESULTS] = {}
    config.stash[RAN] = []
    config.stash[INSTALLS] = []


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """pytest-xdist controller: pass the loadgroup choice to each worker."""
    node.workerinput["compat_loadgroup"] = node.config.option.dist == "loadgroup"


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    if file_path.resolve() == _matrix_path(parent.config):
        return MatrixFile.from_parent(parent, path=file_path)
    return None


class MatrixFile(pytest.File):
    def collect(self):
        config = self.config
        cache = config.getoption("compat_cache_dir")
        try:
            shard = config.getoption("compat_shard")
            session = prepare(self.path, Path(cache) if cache else None,
                              shard=parse_shard(shard) if shard else None,
                              unreleased=config.getoption("compat_unreleased"),
                              artifacts=Path(config.getoption("compat_artifacts")).resolve()
                              if config.getoption("compat_artifacts") else None,
                              options=RunOptions(jobs=config.getoption("compat_jobs"),
                                                 timeout=config.getoption("compat_timeout"),
                                                 search=not config.getoption("compat_no_search")))
        except CompatError as exc:
            raise self.CollectError(str(exc)) from None
        config.stash[SESSION] = session
        for cell in session.plan.cells:
            item = CellItem.from_parent(self, name=cell.id, cell=cell)
            item.add_marker(pytest.mark.compat_cell)
            item.add_marker(pytest.mark.xdist_group(f"{cell.library}=={cell.consumer}"))
            yield item
        for check in session.plan.install_checks:
            item = InstallItem.from_parent(self, name=check.id, check=check)
            item.add_marker(pytest.mark.xdist_group("compat-install-checks"))  # tried together, a few at a time
            yield item


def pytest_collection_finish(session: pytest.Session) -> None:
    """Install checks that were selected start now, in the background beside the cells: they wait on the network and
    uv, not on the cores."""
    if SESSION in session.config.stash and any(isinstance(item, InstallItem) for item in session.items):
        start_installs(session.config.stash[SESSION])


class CellError(Exception):
    pass


class CellFailure(Exception):
    pass


class CellItem(pytest.Item):
    def __init__(self, *, cell, **kwargs):
        super().__init__(**kwargs)
        self.cell = cell
        self.result: CellResult | None = None

    def setup(self) -> None:
        self.result = _result_for(self.config, self.cell)
        self.config.stash[RAN].append(self.cell.id)
        if self.result.verdict == "error":
            raise CellError(f"{self.cell.id}: error: {self.result.summary}\n\n"
                            + self.result.finding.get("reason", ""))
        known = self.result.known_break
        if known is not None:
            # strict: a declared break that no longer breaks fails as XPASS(strict), so declarations never go stale
            self.add_marker(pytest.mark.xfail(
                reason=f"known break ({known['declared_at']}; if this passes, remove or narrow the declaration): "
                       f"{known['reason']}", strict=True, raises=CellFailure))

    def runtest(self) -> None:
        result = self.result
        if result.verdict in GOOD:
            return
        if result.verdict == "not-applicable":
            pytest.skip(f"not applicable: {result.summary}")
        if result.verdict in BAD or result.verdict == "known-break":
            raise CellFailure(_evidence(result))
        raise CellFailure(f"unexpected verdict {result.verdict}: {result.summary}")

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, (CellFailure, CellError)):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, self.cell.id


class InstallItem(pytest.Item):
    """A release the matrix declares it cannot install: an expected failure while it refuses, a failure (the
    declaration is stale) once it installs."""

    def __init__(self, *, check, **kwargs):
        super().__init__(**kwargs)
        self.check = check

    def runtest(self) -> None:
        # every check of the session runs once, in the background; each item reads its own outcome
        self.config.stash[INSTALLS] = try_installs(self.config.stash[SESSION])
        outcome = next(o for o in self.config.stash[INSTALLS] if o["id"] == self.check.id)
        if outcome["installs"]:
            raise CellFailure(install_summary(outcome))
        pytest.xfail(install_summary(outcome))

    def repr_failure(self, excinfo, style=None):
        return str(excinfo.value) if isinstance(excinfo.value, CellFailure) else super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, self.check.id


def _result_for(config: pytest.Config, cell) -> CellResult:
    """Run the cell's consumer environment once and cache the results (without xdist: the whole plan at once).

    Under pytest-xdist, a file lock per consumer environment makes sure only one process checks it: another process
    that reaches the same environment waits and then reads the cached findings. This does not rely on ``loadgroup``
    (pytest-xdist 3.8 cannot tag groups under pytest 9.2, whose node ids are no longer plain strings).
    """
    results = config.stash[RESULTS]
    if cell.id not in results:
        run = config.stash[SESSION].run
        if hasattr(config, "workerinput"):
            consumer = (cell.library, cell.consumer)
            with file_lock(run.store.lock(f"consume-{run.env_keys[consumer]}")):
                found = run.execute({consumer})
        else:
            found = run.execute(None)
        for result in found:
            results[result.cell.id] = result
    return results[cell.id]


def _evidence(result: CellResult) -> str:
    from compat.host.report import evidence_lines

    lines = [f"{result.cell.id}: {result.verdict}: {result.summary}"]
    lines += evidence_lines(result.finding)
    return "\n".join(lines)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    out = config.getoption("compat_report")
    if out and _is_xdist_controller(config):
        _merge_partials(config, Path(out))
        return
    if not out or SESSION not in config.stash or not (config.stash[RAN] or config.stash[INSTALLS]):
        return
    worker = getattr(config, "workerinput", {}).get("workerid")
    folder = Path(out) / f"partial-{worker}" if worker else Path(out)
    compat_session = config.stash[SESSION]
    results = config.stash[RESULTS]
    baseline = None if worker else config.getoption("compat_baseline")  # xdist: the controller takes the changes
    write_report(report_for(compat_session, [results[cell_id] for cell_id in config.stash[RAN]],
                            load_report(Path(baseline)) if baseline else None, config.stash[INSTALLS]), folder)


def _is_xdist_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput") and bool(getattr(config.option, "numprocesses", None))


def _merge_partials(config: pytest.Config, out: Path) -> None:
    """pytest-xdist controller, once every worker has finished: one report in ``out`` from the workers' partial ones
    (``partial-gwN/``, removed once merged), so that ``--compat-report`` means the same with ``-n`` as without.
    Partials older than this session (a run before with more workers) are left out and removed."""
    partials = sorted(out.glob("partial-*/report.json"))
    fresh = [path for path in partials if path.stat().st_mtime >= config.stash[STARTED] - 1]
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if not fresh:
        return
    baseline = config.getoption("compat_baseline")
    try:
        merged = merge_files(fresh, Path(baseline) if baseline else None)
    except CompatError as exc:
        if reporter:
            reporter.write_line(f"compat: error: the workers' reports were not merged: {exc}")
        return
    write_report(merged, out)
    for path in partials:
        shutil.rmtree(path.parent, ignore_errors=True)
    if reporter:
        reporter.write("\n")  # xdist leaves the cursor after its progress
        reporter.write_line(f"compat: report of {len(merged['cells'])} cells written to {out}/ "
                            f"(merged from {len(fresh)} workers)")
