"""Reports over time: read a report back, say what changed since a baseline, and merge shard reports.

The JSON report's schema is versioned (``schema``, documented in ``docs/report-schema.md``); reading a report of another
version, or a file that is not a report, raises ``ReportError`` naming the file and the problem.
"""

from __future__ import annotations

from pathlib import Path

from packaging.version import InvalidVersion, Version

from compat.host.report import SCHEMA
from compat.host.report.schema import report_problem
from compat.host.verdicts import GOOD, RED
from compat.shared.errors import CompatError
from compat.shared.untrusted import UntrustedInputError, parse_json, read_text


class ReportError(CompatError):
    pass


def load_report(path: Path) -> dict:
    """A report as written by ``compat run``; any other file is a clear error naming it (and the field), never a
    traceback in whichever command reads it."""
    try:
        report = parse_json(read_text(path, "report"), str(path), "report")
    except UntrustedInputError as exc:
        raise ReportError(str(exc)) from None
    if not isinstance(report, dict) or "schema" not in report:
        raise ReportError(f"{path}: not a compat report (no 'schema' field)")
    if report["schema"] != SCHEMA:
        raise ReportError(f"{path}: report schema {report['schema']!r}; this compat reads schema {SCHEMA} "
                          "(rerun the matrix with this compat to get a comparable report)")
    if not isinstance(report.get("cells"), list):
        raise ReportError(f"{path}: 'cells' must be a list")
    problem = report_problem(report)
    if problem:
        raise ReportError(f"{path}: {problem}")
    return report


def changes(baseline: dict, current: dict) -> dict:
    """Cells whose verdict changed since ``baseline``, releases seen for the first time, cells no longer run."""
    before = {cell["id"]: cell for cell in baseline["cells"]}
    after = {cell["id"]: cell for cell in current["cells"]}
    changed = []
    for cell_id in sorted(set(before) & set(after)):
        old, new = before[cell_id]["verdict"], after[cell_id]["verdict"]
        if old != new:
            kind = "new-red" if new in RED and old not in RED else "new-green" if new in GOOD and old not in GOOD \
                else "changed"
            changed.append({"id": cell_id, "before": old, "after": new, "kind": kind,
                            "summary": after[cell_id].get("summary", "")})
    releases_before = {(c["library"], v) for c in baseline["cells"] for v in (c["producer"], c["consumer"])}
    releases_after = {(c["library"], v) for c in current["cells"] for v in (c["producer"], c["consumer"])}
    return {
        "baseline": {"created": baseline.get("created"), "compat": baseline.get("compat")},
        "changed": changed,
        "new_releases": [f"{lib}=={v}" for lib, v in sorted(releases_after - releases_before, key=_release_order)],
        "new_cells": sorted(set(after) - set(before)),
        "removed_cells": sorted(set(before) - set(after)),
    }


def merge_files(paths: list[Path], baseline: Path | None = None) -> dict:
    """``merge`` of report files (``compat merge``, and pytest-xdist's partial reports), with the changes against
    ``baseline`` taken on the whole."""
    merged = merge([(path, load_report(path)) for path in paths])
    if baseline:
        merged["changes"] = changes(load_report(baseline), merged)
    return merged


def merge(reports: list[tuple[Path, dict]]) -> dict:
    """One report from shard reports of the same matrix; refuses reports of different matrices or conflicting cells."""
    if not reports:
        raise ReportError("nothing to merge")
    first_path, first = reports[0]
    merged = dict(first, cells=[], environments={}, stats={}, shard=None, uninstallable=[])
    seen: dict[str, tuple[Path, dict]] = {}
    tried: dict[str, dict] = {}  # install checks by id: any report may hold them (the one that tried them)
    for path, report in reports:
        if report.get("matrix_digest") != first.get("matrix_digest"):
            raise ReportError(f"{path}: made from a different matrix than {first_path} "
                              f"({report.get('matrix')} vs {first.get('matrix')}); refusing to merge")
        for cell in report["cells"]:
            if cell["id"] in seen and seen[cell["id"]][1]["verdict"] != cell["verdict"]:
                raise ReportError(f"{path}: cell {cell['id']} is {cell['verdict']} here but "
                                  f"{seen[cell['id']][1]['verdict']} in {seen[cell['id']][0]}")
            if cell["id"] not in seen:
                seen[cell["id"]] = (path, cell)
                merged["cells"].append(cell)
        for library, versions in report.get("environments", {}).items():
            merged["environments"].setdefault(library, {}).update(versions)
        for key, value in report.get("stats", {}).items():
            merged["stats"][key] = merged["stats"].get(key, 0) + value
        for check in report.get("uninstallable") or []:
            tried.setdefault(check["id"], check)
    merged["uninstallable"] = list(tried.values())
    merged["cells"].sort(key=lambda c: c["id"])
    return merged


def _release_order(release: tuple[str, str]) -> tuple:
    try:
        return release[0], Version(release[1])
    except InvalidVersion:
        return release[0], Version("0")
