"""What a person needs to read a run: the grids, a summary per library, evidence grouped, and a next step per red cell.

Pure functions over report cells (dicts as in ``report.json``); the Markdown and HTML renderers both build on them,
so the two pages always say the same thing.
"""

from __future__ import annotations

import json
from collections import defaultdict

from packaging.version import Version

from compat.host.renames import probable_renames
from compat.host.report.evidence import evidence_lines
from compat.host.verdicts import BAD, LADDER, READS, RED
from compat.host.wording import counted

SYMBOL = {"identical": "=", "equivalent": "≈", "converted": "C", "known-break": "K", "lossy": "L", "diverged": "D",
          "incompatible": "X", "not-applicable": "·", "error": "E"}
COLUMN = {"identical": "loads", "equivalent": "loads", "converted": "converts", "lossy": "lossy",  # summary column
          "diverged": "silent", "incompatible": "refuses", "not-applicable": "not_applicable", "error": "errors"}
# evidence in the order a reader needs it: the silent breaks first, then refusals, failures, and what merely moved
READING_ORDER = ("diverged", "incompatible", "lossy", "error", "converted", "equivalent", "not-applicable",
                 "known-break", "identical")
SUMMARY_COLUMNS = (("loads", "loads (identical or equivalent)"), ("converts", "converts with a rule"),
                   ("lossy", "converts only with losses"),
                   ("silent", "breaks silently (diverged)"), ("refuses", "refuses to load"),
                   ("not_applicable", "not applicable"), ("errors", "errors"))


def counts(cells: list[dict]) -> dict[str, int]:
    tally = {verdict: 0 for verdict in LADDER}
    for cell in cells:
        tally[cell["verdict"]] += 1
    return {k: v for k, v in tally.items() if v}


def library_summary(cells: list[dict]) -> list[dict]:
    """Per library: how many cells load, convert, break silently, refuse, do not apply or failed (by what happens,
    declared or not), and how many red cells are not declared as known breaks."""
    rows: dict[str, dict] = {}
    for cell in cells:
        row = rows.setdefault(cell["library"], {"library": cell["library"], "cells": 0, "loads": 0, "converts": 0,
                                                "lossy": 0, "silent": 0, "refuses": 0, "not_applicable": 0, "errors": 0,
                                                "declared": 0, "undeclared_red": 0})
        row["cells"] += 1
        row[COLUMN[cell["underlying"]]] += 1
        row["declared"] += cell["verdict"] == "known-break"
        row["undeclared_red"] += cell["verdict"] in RED or bool(cell.get("stale_known_break"))
    return [rows[name] for name in sorted(rows)]


def unreleased_lead(cells: list[dict], environments: dict) -> list[dict]:
    """Per unreleased version (a working tree, a git commit, a wheel): the releases whose checkpoints it no longer
    reads (incompatible or diverged) although the newest release in the run reads them (or that cell was not run).
    Regression in the making, which the report names before anything else."""
    lead = []
    for library, versions in sorted(environments.items()):
        unreleased = sorted(v for v, record in versions.items() if "source" in record)
        if not unreleased:
            continue
        releases = sorted((v for v in versions if v not in unreleased), key=Version)
        newest = releases[-1] if releases else None
        mine = [c for c in cells if c["library"] == library]
        by_newest = {(c["recipe"], c["producer"]): c for c in mine if c["consumer"] == newest}
        for version in unreleased:
            record = versions[version]
            read = [c for c in mine if c["consumer"] == version and c["producer"] in releases]
            broken = [c for c in read if c["underlying"] in BAD and by_newest.get(
                (c["recipe"], c["producer"]), {}).get("underlying") not in BAD]
            producers = sorted({c["producer"] for c in broken}, key=Version)
            lead.append({"library": library, "version": version, "source": record["source"], "newest": newest,
                         "checked": len(read), "broken": len(broken), "producers": producers,
                         "recipes": sorted({c["recipe"] for c in broken}), "cells": [c["id"] for c in broken]})
    return lead


def lead_sentence(entry: dict) -> str:
    """One line: what the unreleased version breaks, or that it reads every release it was checked against."""
    source = entry["source"]
    name = f"{entry['library']} {entry['version']} ({source['kind']} {source['location']})"
    if source.get("problem"):
        return f"{name} could not be built: {source['problem'].splitlines()[0]}"
    if not entry["broken"]:
        return f"{name} reads the checkpoints of every release it was checked against ({entry['checked']} cells)"
    producers = entry["producers"]
    span = producers[0] if len(producers) == 1 else f"{producers[0]} ... {producers[-1]}"
    return (f"unreleased code breaks checkpoints of {entry['library']} {span} ({len(producers)} releases, "
            f"{entry['broken']} cells; recipes: {', '.join(entry['recipes'])}) that {entry['newest']} reads: {name}")


def grids(cells: list[dict]) -> dict[tuple[str, str], dict]:
    found: dict[tuple[str, str], dict] = defaultdict(lambda: {"versions": set(), "cells": {}})
    for cell in cells:
        grid = found[(cell["library"], cell["recipe"])]
        grid["versions"] |= {cell["producer"], cell["consumer"]}
        grid["cells"][(cell["producer"], cell["consumer"])] = cell
    for grid in found.values():
        grid["versions"] = sorted(grid["versions"], key=Version)
    return dict(found)


def table(grid: dict) -> tuple[str, list[tuple[str, list[dict | None]]]]:
    """The corner label and the rows of a grid. Probes (every cell has producer == consumer) read as one row, one
    verdict per release, instead of a square with only its diagonal filled."""
    versions = grid["versions"]
    if all(producer == consumer for producer, consumer in grid["cells"]):
        return "release", [("verdict", [grid["cells"].get((v, v)) for v in versions])]
    return "producer \\ consumer", [(producer, [grid["cells"].get((producer, consumer)) for consumer in versions])
                                     for producer in versions]


def symbol(cell: dict | None) -> str:
    if cell is None:
        return " "
    text = SYMBOL[cell["verdict"]]
    if cell["verdict"] == "known-break":
        text += SYMBOL.get(cell["underlying"], "")
    if cell.get("stale_known_break"):
        text += "!"
    return text


def known_break_groups(cells: list[dict]) -> list[dict]:
    """Cells under a known break, grouped by declaration; undocumented-upstream declarations first."""
    groups: dict[str, dict] = {}
    for cell in cells:
        if cell["verdict"] != "known-break":
            continue
        known = cell["known_break"]
        group = groups.setdefault(known["declared_at"], {"known_break": known, "cells": [], "underlying": {},
                                                        "recipes": []})
        group["cells"].append(cell)
        group["underlying"][cell["underlying"]] = group["underlying"].get(cell["underlying"], 0) + 1
        if cell["recipe"] not in group["recipes"]:
            group["recipes"].append(cell["recipe"])
    return sorted(groups.values(), key=lambda g: (g["known_break"]["upstream"] != "undocumented",
                                                  _declared_order(g["known_break"]["declared_at"])))


def _declared_order(where: str) -> tuple:
    path, _, line = where.rpartition(":")
    return path, int(line) if line.isdigit() else 0


def evidence_groups(cells: list[dict]) -> list[dict]:
    """Cells that need their evidence shown (not identical, not under a known break, or a stale declaration),
    grouped where verdict, summary, evidence and next step are the same (one failed environment gives many cells
    with one message: the reader needs it once), in reading order: silent breaks first."""
    steps = NextSteps(cells)
    groups: dict[tuple, dict] = {}
    for cell in cells:
        if cell["verdict"] in ("identical", "known-break") and not cell.get("stale_known_break"):
            continue
        lines = evidence_lines(cell["evidence"])
        step = steps.for_cell(cell)
        key = (cell["verdict"], cell["underlying"], cell["summary"], tuple(lines), step,
               bool(cell.get("stale_known_break")))
        group = groups.setdefault(key, {"verdict": cell["verdict"], "underlying": cell["underlying"],
                                        "summary": cell["summary"], "lines": lines, "next_step": step,
                                        "stale": bool(cell.get("stale_known_break")), "cells": []})
        group["cells"].append(cell)
    return sorted(groups.values(), key=lambda g: (READING_ORDER.index(g["verdict"]), g["cells"][0]["id"]))


class NextSteps:
    """What a user can do about a red cell, from the rest of the run: the newest release that reads the same
    checkpoint, a conversion the matrix already has, shape-compatible renames to turn into a rule, or that no key
    conversion can help (same keys, other outputs)."""

    def __init__(self, cells: list[dict]):
        self.rows: dict[tuple, list[dict]] = defaultdict(list)
        for cell in cells:
            self.rows[(cell["library"], cell["recipe"], cell["producer"])].append(cell)

    def for_cell(self, cell: dict) -> str | None:
        if cell["verdict"] == "error":
            return "errors are not cached: rerun to retry; if it fails again, the message says which environment " \
                   "and why"
        if cell["underlying"] not in BAD:
            return None
        if cell["producer"] == cell["consumer"]:
            return "this release fails on its own: choose another release (the row shows which pass)"
        row = [c for c in self.rows[(cell["library"], cell["recipe"], cell["producer"])]
               if c["consumer"] != cell["producer"]]
        parts = []
        keys = cell["evidence"].get("keys") or {}
        renames = probable_renames(keys)
        if renames:
            old, new = renames[0]
            parts.append(f"{counted(len(renames), 'key', ('looks', 'look'))} renamed (same shapes), e.g. {old} -> "
                         f"{new}: `compat diff --infer` on the two checkpoints proposes a rule, `compat convert "
                         "--verify` checks it")
        elif cell["underlying"] == "diverged" and not (keys.get("missing") or keys.get("unexpected")):
            parts.append("same keys, other outputs: no key conversion fixes this (a changed default may: pass the "
                         "producer's constructor arguments)")
        converted = _newest(c for c in row if c["underlying"] == "converted")
        if converted:
            parts.append(f"the matrix's conversion rule makes it load in {converted}")
        reader = _newest(c for c in row if c["underlying"] in READS)
        parts.append(f"the newest release that reads it as saved: {reader}" if reader else
                     "no other release in the matrix reads it as saved")
        return "; ".join(parts)


def _newest(cells) -> str | None:
    versions = [c["consumer"] for c in cells]
    return max(versions, key=Version) if versions else None


def conversion_catalogue(cells: list[dict]) -> dict[str, list[dict]]:
    """Per library, every conversion the search found and verified, as data: the rule once, with the verdict it gave
    (``converted``: outputs agree; ``lossy``: the best found, and what it loses), the recipes and the release pairs
    (``producer -> consumer``) it was verified on, most pairs first."""
    groups: dict[tuple[str, str, str], dict] = {}
    for cell in cells:
        evidence = cell["evidence"]
        if not evidence.get("search") or cell["underlying"] not in ("converted", "lossy"):
            continue
        rule = evidence.get("rule") or {}
        key = (cell["library"], cell["underlying"], json.dumps(rule, sort_keys=True))
        group = groups.setdefault(key, {"verdict": cell["underlying"], "recipes": set(), "pairs": set(), "rule": rule})
        group["recipes"].add(cell["recipe"])
        group["pairs"].add((cell["producer"], cell["consumer"]))
    catalogue: dict[str, list[dict]] = {}
    for (library, _, _), group in groups.items():
        pairs = sorted(group["pairs"], key=lambda pair: (Version(pair[0]), Version(pair[1])))
        catalogue.setdefault(library, []).append({
            "verdict": group["verdict"], "recipes": sorted(group["recipes"]),
            "pairs": [f"{producer} -> {consumer}" for producer, consumer in pairs], "rule": group["rule"]})
    for entries in catalogue.values():
        entries.sort(key=lambda entry: (entry["verdict"] != "converted", -len(entry["pairs"])))
    return dict(sorted(catalogue.items()))
