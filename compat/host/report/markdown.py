"""report.md: the summary a person reads in ten seconds, the news since the baseline, the grids, the declared known
breaks, and the evidence of every other cell that is not identical, grouped, silent breaks first."""

from __future__ import annotations

from compat.host.install_checks import summary as install_summary
from compat.host.report.evidence import evidence_lines
from compat.host.report.reading import (
    SUMMARY_COLUMNS,
    SYMBOL,
    conversion_catalogue,
    counts,
    evidence_groups,
    grids,
    known_break_groups,
    lead_sentence,
    library_summary,
    symbol,
    table,
    unreleased_lead,
)
from compat.host.search import rule_summary
from compat.host.verdicts import LADDER, MEANING

CHANGE_TITLES = (("new-red", "New red cells"), ("new-green", "New green cells"), ("changed", "Other changes"))
SHOWN = 10  # cell ids listed per group before "+N more"


def markdown(report: dict) -> str:
    cells = report["cells"]
    lines = ["# compat report", "",
             f"Run {report['created']} · compat {report['compat']} · python {report['host']['python']} · "
             f"torch {report['host']['torch']} · matrix `{report['matrix']}`", "",
             "Totals: " + ", ".join(f"{k} {v}" for k, v in counts(cells).items()), "",
             *unreleased_lines(report), *summary_lines(cells), *change_lines(report),
             "Rows: the release that **saved** the checkpoint (producer). Columns: the release that **loads** it "
             "(consumer). A probe (a behaviour, one verdict per release) is a single row.", "",
             "Legend:", *legend_lines(), ""]
    for (library, recipe), grid in sorted(grids(cells).items()):
        corner, rows = table(grid)
        lines += [f"## {library} / {recipe}", "", f"| {corner} | " + " | ".join(grid["versions"]) + " |",
                  "|---|" + "---|" * len(grid["versions"])]
        lines += [f"| **{label}** | " + " | ".join(symbol(cell) for cell in row) + " |" for label, row in rows]
        lines.append("")
    lines += (_known_break_lines(cells) + conversion_lines(cells) + uninstallable_lines(report)
              + _evidence_lines(cells))
    return "\n".join(lines) + "\n"


def unreleased_lines(report: dict) -> list[str]:
    """Regression in the making first: what unreleased versions no longer read."""
    lead = unreleased_lead(report["cells"], report.get("environments", {}))
    if not lead:
        return []
    return ["## Unreleased versions", "", *(f"- {'**' if e['broken'] else ''}{lead_sentence(e)}"
                                            f"{'**' if e['broken'] else ''}" for e in lead), ""]


def conversion_lines(cells: list[dict], shown: int = 12) -> list[str]:
    """The conversions the search found, each rule once with the pairs it was verified on (all in conversions.yaml)."""
    catalogue = conversion_catalogue(cells)
    if not catalogue:
        return []
    lines = ["## Conversions found by the search", "",
             "Each rule once, with the release pairs (producer -> consumer) it was verified on; every rule in full is "
             "in `conversions.yaml` beside this report.", ""]
    for library, entries in catalogue.items():
        for entry in entries[:shown]:
            pairs = entry["pairs"]
            lines.append(f"- **{library}** {entry['verdict']}: {rule_summary(entry['rule'])} "
                         f"({', '.join(entry['recipes'])}; {len(pairs)} release pairs: {', '.join(pairs[:4])}"
                         f"{' ...' if len(pairs) > 4 else ''})")
        if len(entries) > shown:
            lines.append(f"- {library}: {len(entries) - shown} more rules in `conversions.yaml`")
    return lines + [""]


def uninstallable_lines(report: dict) -> list[str]:
    """Releases the matrix declares it cannot install here: tried, with uv's last line; stale declarations first."""
    outcomes = sorted(report.get("uninstallable", []), key=lambda o: (not o["installs"], o["library"]))
    if not outcomes:
        return []
    return ["## Releases that cannot be installed here", "",
            *(f"- {'**' if o['installs'] else ''}{install_summary(o)}{'**' if o['installs'] else ''}"
              for o in outcomes), ""]


def summary_lines(cells: list[dict]) -> list[str]:
    rows = library_summary(cells)
    lines = ["## Summary", "", "| library | cells | " + " | ".join(title for _, title in SUMMARY_COLUMNS)
             + " | declared known breaks |", "|---|" + "---|" * (len(SUMMARY_COLUMNS) + 2)]
    lines += [f"| {row['library']} | {row['cells']} | " + " | ".join(str(row[key]) for key, _ in SUMMARY_COLUMNS)
              + f" | {row['declared']} |" for row in rows]
    red = sum(row["undeclared_red"] for row in rows)
    lines += ["", f"**{red} red cells are not declared as known breaks**: their evidence comes first below." if red
              else "Every red cell is declared as a known break (the columns count what happens, declared or not).",
              ""]
    return lines


def change_lines(report: dict) -> list[str]:
    """The news since the baseline."""
    news = report.get("changes")
    if not news:
        return []
    baseline = news["baseline"]
    lines = [f"## Changes since the baseline ({baseline.get('created')}, compat {baseline.get('compat')})", ""]
    if not (news["changed"] or news["new_releases"] or news["removed_cells"]):
        return lines + ["No verdict changed.", ""]
    for kind, title in CHANGE_TITLES:
        rows = [c for c in news["changed"] if c["kind"] == kind]
        if rows:
            lines += [f"**{title}** ({len(rows)}):", ""]
            lines += [f"- `{c['id']}`: {c['before']} → **{c['after']}** ({c['summary']})" for c in rows]
            lines.append("")
    if news["new_releases"]:
        lines += [f"**Releases seen for the first time**: {', '.join(news['new_releases'])} "
                  f"({len(news['new_cells'])} new cells)", ""]
    if news["removed_cells"]:
        lines += [f"**Cells no longer in the matrix**: {len(news['removed_cells'])}", ""]
    return lines


def legend_lines() -> list[str]:
    lines = [f"- `{SYMBOL[v]}` **{v}**: {MEANING[v]}" for v in LADDER]
    lines.append("- `KX` / `KD`: a known break whose underlying verdict is incompatible / diverged; "
                 "`!` after a symbol: declared as a known break, but it no longer breaks (stale declaration)")
    return lines


def _known_break_lines(cells: list[dict]) -> list[str]:
    groups = known_break_groups(cells)
    if not groups:
        return []
    lines = ["## Known breaks", "", "Declared in the matrix; upstream-undocumented ones first. Each with the verdicts "
             "underneath and one example's evidence.", ""]
    for group in groups:
        known, members = group["known_break"], group["cells"]
        underneath = ", ".join(f"{k} {v}" for k, v in sorted(group["underlying"].items()))
        lines += [f"### {known['reason']}", "",
                  f"{len(members)} cells ({underneath}); recipes: {', '.join(group['recipes'])}; "
                  f"upstream: {known['upstream']}" + (f"; {known['link']}" if known.get("link") else "")
                  + f"; declared at `{known['declared_at']}`", "",
                  f"Example `{members[0]['id']}`: {members[0]['summary']}", ""]
        details = evidence_lines(members[0]["evidence"])
        if details:
            lines += ["```", *details, "```", ""]
    return lines


def _evidence_lines(cells: list[dict]) -> list[str]:
    groups = evidence_groups(cells)
    if not groups:
        return []
    lines = ["## Evidence", "", "Every other cell that is not identical, silent breaks first; cells with the same "
             "evidence are one entry.", ""]
    for group in groups:
        members = group["cells"]
        verdict = group["verdict"] + (f" (underlying: {group['underlying']})"
                                      if group["underlying"] != group["verdict"] else "")
        title = f"`{members[0]['id']}`" if len(members) == 1 else f"{len(members)} cells"
        lines += [f"### {title}: {verdict}", "", group["summary"], ""]
        if len(members) > 1:
            shown = ", ".join(f"`{c['id']}`" for c in members[:SHOWN])
            lines += [f"Cells: {shown}" + (f" (+{len(members) - SHOWN} more)" if len(members) > SHOWN else ""), ""]
        if group["stale"]:
            known = members[0]["known_break"]
            lines += [f"**Declared as a known break ({known['reason']}, at {known['declared_at']}) but it no longer "
                      "breaks: update the matrix.**", ""]
        if group["next_step"]:
            lines += [f"**What to do**: {group['next_step']}", ""]
        if group["lines"]:
            lines += ["```", *group["lines"], "```", ""]
    return lines
