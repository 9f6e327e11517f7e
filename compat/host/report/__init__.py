"""The report of a run: ``report.json`` for machines, ``report.md`` and ``index.html`` for people.

``reading`` holds what both pages say (summary, grids, grouped evidence, next steps) as pure functions; ``markdown``
and ``html`` render it; ``evidence`` turns one cell's findings into lines.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import compat
from compat.host.report.evidence import evidence_lines
from compat.host.report.html import html_page
from compat.host.report.markdown import markdown
from compat.host.report.reading import conversion_catalogue, counts, known_break_groups

SCHEMA = 1
__all__ = ["SCHEMA", "build_report", "counts", "evidence_lines", "html_page", "known_break_groups", "markdown",
           "write_report"]


def build_report(cells: list[dict], environments: dict, matrix_path: str, torch_version: str,
                 stats: dict | None = None, matrix_digest: str = "", shard: str | None = None) -> dict:
    """The JSON report (schema: docs/report-schema.md)."""
    return {
        "schema": SCHEMA,
        "compat": compat.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {"python": platform.python_version(), "torch": torch_version, "platform": platform.platform()},
        "matrix": matrix_path,
        "matrix_digest": matrix_digest,
        "shard": shard,
        "stats": stats or {},
        "environments": environments,
        "cells": cells,
    }


CATALOGUE_HEADER = """\
# Conversions compat's search found and verified in this run, per library: each rule once, with the verdict it gave
# (converted: the outputs agree; lossy: the best conversion found, which drops values), the recipes and the
# producer -> consumer release pairs it was verified on. A rule is a rule set for `compat convert --rules` or a
# matrix's `rules:` entry.
"""


def write_report(report: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "report.json", out / "report.md", out / "index.html"]
    paths[0].write_text(json.dumps(report, sort_keys=True))
    paths[1].write_text(markdown(report))
    paths[2].write_text(html_page(report))
    catalogue = conversion_catalogue(report["cells"])
    conversions = out / "conversions.yaml"
    if catalogue:  # the conversions the search found, as data a matrix's ``rules:`` or ``compat convert`` can take
        import yaml

        conversions.write_text(CATALOGUE_HEADER + yaml.safe_dump(catalogue, sort_keys=False, width=120))
        paths.append(conversions)
    else:
        conversions.unlink(missing_ok=True)
    return paths
