"""Pins advice from a report: for each producer release, the newest release that still reads its checkpoints.

A consumer "reads" a producer's artifacts when every recipe that both releases can build is ``identical`` or
``equivalent`` (``converted`` is listed separately: it needs a rule). Known breaks count as red: they are real.
"""

from __future__ import annotations

from collections import defaultdict

from packaging.version import Version

from compat.host.verdicts import READS


def advice(cells: list[dict]) -> dict[str, list[dict]]:
    """library -> [{producer, newest, newest_converted, reads, refuses}], producers oldest first."""
    by_pair: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for cell in cells:
        if cell["underlying"] not in ("not-applicable", "error") and not producer_failed(cell):
            by_pair[(cell["library"], cell["producer"], cell["consumer"])].append(cell["underlying"])
    table: dict[str, list[dict]] = defaultdict(list)
    libraries = sorted({cell["library"] for cell in cells})
    for library in libraries:
        # only releases that took part: a release whose every cell is not-applicable or an error neither saved
        # a checkpoint (no row) nor read one (not listed as refusing)
        judged = {release for (lib, producer, consumer) in by_pair if lib == library
                  for release in (producer, consumer)}
        versions = sorted(judged, key=Version)
        producers = [v for v in versions if any(lib == library and p == v for lib, p, _ in by_pair)]
        for producer in producers:
            reads, converted = [], []
            for consumer in versions:
                verdicts = by_pair.get((library, producer, consumer))
                if not verdicts:
                    continue
                if all(v in READS for v in verdicts):
                    reads.append(consumer)
                elif all(v in READS | {"converted"} for v in verdicts):
                    converted.append(consumer)
            table[library].append({
                "producer": producer,
                "newest": reads[-1] if reads else None,
                "newest_converted": converted[-1] if converted else None,
                "reads": reads,
                "refuses": [v for v in versions if v not in reads and v not in converted
                            and (library, producer, v) in by_pair],
            })
    return dict(table)


def producer_failed(cell: dict) -> bool:
    """The producing release could not make the checkpoint: the cell says nothing about reading one."""
    evidence = cell.get("evidence") or {}
    return evidence.get("failed") == "producer" or str(evidence.get("reason", "")).startswith("producer ")


def constraint(package: str, row: dict) -> str:
    """A pip constraint that allows exactly the tested releases, from the producer's to the newest, that read it."""
    if row["newest"] is None:
        return f"# no tested release of {package} reads checkpoints from {row['producer']}"
    newest = Version(row["newest"])
    lower = min([Version(row["producer"]), *map(Version, row["reads"])])
    excluded = [v for v in row["refuses"] if lower <= Version(v) <= newest]
    return ",".join([f"{package}>={lower}", f"<={newest}", *(f"!={v}" for v in excluded)])


def table_lines(library: str, rows: list[dict]) -> list[str]:
    lines = [f"## {library}", "", "| saved with | newest that reads it | newest with a conversion rule | refuses |",
             "|---|---|---|---|"]
    for row in rows:
        refuses = ", ".join(row["refuses"][:6]) + (" ..." if len(row["refuses"]) > 6 else "")
        lines.append(f"| {row['producer']} | {row['newest'] or '—'} | {row['newest_converted'] or '—'} | "
                     f"{refuses or '—'} |")
    return lines + [""]
