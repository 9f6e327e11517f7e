"""pytest face of compat: the matrix file is collected as one test per cell.

Outcomes follow the verdict: identical / equivalent / converted pass; diverged / incompatible fail with the evidence;
known-break is a strict xfail, so a known break that no longer breaks fails (declarations never go stale);
not-applicable skips; error is a test error. Cells carry an ``xdist_group`` mark per consumer environment, and the
plugin asks pytest-xdist for ``--dist loadgroup``, so one environment's cells stay in one process and no environment is
run twice (builds and productions shared between processes are serialised by file locks in the cache).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from compat.api import Session, default_cache_dir, prepare, report_for
from compat.errors import CompatError
from compat.matrix import default_matrix_path
from compat.report import write_report
from compat.runner import CellResult, RunOptions
from compat.verdicts import BAD, GOOD

SESSION = pytest.StashKey[Session]()
RESULTS = pytest.StashKey[dict]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("compat", "compat compatibility matrix")
    group.addoption("--compat-matrix", help="matrix file to collect (default: the project's matrix.yaml)")
    group.addoption("--compat-cache-dir", help="cache folder (default: $COMPAT_CACHE_DIR or .compat/)")
    group.addoption("--compat-report", help="write report.json/report.md/index.html for the cells run here")
    group.addoption("--compat-jobs", type=int, default=2, help="workers busy at once")
    group.addoption("--compat-timeout", type=float, help="seconds a worker may go without progress")


def _matrix_path(config: pytest.Config) -> Path:
    option = config.getoption("compat_matrix")
    return Path(option).resolve() if option else default_matrix_path()


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's, which sends the options to its workers
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "compat_cell: a cell of the compat matrix")
    option = config.getoption("compat_matrix")
    if option:
        chosen = Path(option).resolve()
        config.option.compat_matrix = str(chosen)  # absolute, so that xdist workers find the same file
        default = default_matrix_path()
        config.args[:] = [a for a in config.args if Path(a.split("::")[0]).resolve() != default]
        if not any(Path(a.split("::")[0]).resolve() == chosen for a in config.args):
            config.args.append(str(chosen))
    if getattr(config.option, "numprocesses", None) and getattr(config.option, "dist", "no") in ("no", "load"):
        config.option.dist = "loadgroup"
    if getattr(config, "workerinput", {}).get("compat_loadgroup"):
        config.option.loadgroup = True  # xdist workers re-parse the command line; tell them to tag groups
    config.stash[RESULTS] = {}


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
            session = prepare(self.path, Path(cache) if cache else default_cache_dir(),
                              options=RunOptions(jobs=config.getoption("compat_jobs"),
                                                 timeout=config.getoption("compat_timeout")))
        except CompatError as exc:
            raise self.CollectError(str(exc)) from None
        config.stash[SESSION] = session
        for cell in session.plan.cells:
            item = CellItem.from_parent(self, name=cell.id, cell=cell)
            item.add_marker(pytest.mark.compat_cell)
            item.add_marker(pytest.mark.xdist_group(f"{cell.library}=={cell.consumer}"))
            yield item


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


def _result_for(config: pytest.Config, cell) -> CellResult:
    """Run the cell's consumer environment once per process (all of it, without xdist) and cache the results."""
    results = config.stash[RESULTS]
    if cell.id not in results:
        run = config.stash[SESSION].run
        distributed = hasattr(config, "workerinput")
        consumers = {(cell.library, cell.consumer)} if distributed else None
        for result in run.execute(consumers):
            results[result.cell.id] = result
    return results[cell.id]


def _evidence(result: CellResult) -> str:
    from compat.report import _details

    lines = [f"{result.cell.id}: {result.verdict}: {result.summary}"]
    lines += _details(result.finding)
    return "\n".join(lines)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    out = config.getoption("compat_report")
    if not out or SESSION not in config.stash or not config.stash[RESULTS]:
        return
    worker = getattr(config, "workerinput", {}).get("workerid")
    folder = Path(out) / f"partial-{worker}" if worker else Path(out)
    compat_session = config.stash[SESSION]
    write_report(report_for(compat_session, list(config.stash[RESULTS].values())), folder)
