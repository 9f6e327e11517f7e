"""Compare two reports cell by cell: the same cells must have the same verdict and the same verdict underneath.

    python scripts/compare_verdicts.py BEFORE/report.json AFTER/report.json [--subset]

How a refactor shows it changed no verdict: run the default matrix before and after, then compare. Prints the count
of cells compared and every difference; exits 1 if any cell differs (or, without ``--subset``, if a cell is in only
one of the reports).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from compat.host.history import load_report


def differences(before: dict, after: dict, subset: bool = False) -> tuple[int, list[str]]:
    """(cells compared, differences as lines)."""
    old = {cell["id"]: cell for cell in before["cells"]}
    new = {cell["id"]: cell for cell in after["cells"]}
    lines = []
    if not subset:
        lines += [f"{cell}: only in the first report" for cell in sorted(set(old) - set(new))]
        lines += [f"{cell}: only in the second report" for cell in sorted(set(new) - set(old))]
    compared = sorted(set(old) & set(new))
    for cell in compared:
        was, now = old[cell], new[cell]
        if (was["verdict"], was["underlying"]) != (now["verdict"], now["underlying"]):
            lines.append(f"{cell}: {was['verdict']} ({was['underlying']}) -> {now['verdict']} ({now['underlying']})")
    return len(compared), lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--subset", action="store_true", help="the second report ran a selection of the first's cells")
    args = parser.parse_args()
    before, after = load_report(args.before), load_report(args.after)
    compared, lines = differences(before, after, args.subset)
    print("\n".join(lines[:200]))
    counts = Counter(cell["verdict"] for cell in after["cells"])
    print(f"{compared} cells compared, {len(lines)} differences; after: "
          + ", ".join(f"{verdict} {count}" for verdict, count in counts.most_common()))
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
