"""The report of a run: ``report.json`` for machines, ``report.md`` and ``index.html`` for people.

Markdown: per library and recipe a producer x consumer grid with a legend, then the evidence for every cell that is
not identical. HTML: the same, as one self-contained page (inline CSS, no scripts from anywhere).
"""

from __future__ import annotations

import html
import json
import platform
import time
from collections import defaultdict
from pathlib import Path

from packaging.version import Version

import compat
from compat.verdicts import LADDER, MEANING

SCHEMA = 1
SYMBOL = {"identical": "=", "equivalent": "≈", "converted": "C", "known-break": "K", "diverged": "D",
          "incompatible": "X", "not-applicable": "·", "error": "E"}
COLOUR = {"identical": "#2e7d32", "equivalent": "#66bb6a", "converted": "#29b6f6", "known-break": "#9e9e9e",
          "diverged": "#e53935", "incompatible": "#fb8c00", "not-applicable": "#eeeeee", "error": "#6a1b9a"}


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


def change_lines(report: dict) -> list[str]:
    """The news since the baseline, first thing in the Markdown report."""
    news = report.get("changes")
    if not news:
        return []
    baseline = news["baseline"]
    lines = [f"## Changes since the baseline ({baseline.get('created')}, compat {baseline.get('compat')})", ""]
    if not (news["changed"] or news["new_releases"] or news["removed_cells"]):
        return lines + ["No verdict changed.", ""]
    for kind, title in (("new-red", "New red cells"), ("new-green", "New green cells"), ("changed", "Other changes")):
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


def write_report(report: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "report.json", out / "report.md", out / "index.html"]
    paths[0].write_text(json.dumps(report, sort_keys=True))
    paths[1].write_text(markdown(report))
    paths[2].write_text(html_page(report))
    return paths


def _grids(cells: list[dict]) -> dict[tuple[str, str], dict]:
    grids: dict[tuple[str, str], dict] = defaultdict(lambda: {"versions": set(), "cells": {}})
    for cell in cells:
        grid = grids[(cell["library"], cell["recipe"])]
        grid["versions"] |= {cell["producer"], cell["consumer"]}
        grid["cells"][(cell["producer"], cell["consumer"])] = cell
    for grid in grids.values():
        grid["versions"] = sorted(grid["versions"], key=Version)
    return dict(grids)


def _table(grid: dict) -> tuple[str, list[tuple[str, list[dict | None]]]]:
    """The corner label and the rows of a grid. Probes (every cell has producer == consumer) read as one row, one
    verdict per release, instead of a square with only its diagonal filled."""
    versions = grid["versions"]
    if all(producer == consumer for producer, consumer in grid["cells"]):
        return "release", [("verdict", [grid["cells"].get((v, v)) for v in versions])]
    return "producer \\ consumer", [(producer, [grid["cells"].get((producer, consumer)) for consumer in versions])
                                     for producer in versions]


def _symbol(cell: dict | None) -> str:
    if cell is None:
        return " "
    symbol = SYMBOL[cell["verdict"]]
    if cell["verdict"] == "known-break":
        symbol += SYMBOL.get(cell["underlying"], "")
    if cell.get("stale_known_break"):
        symbol += "!"
    return symbol


def counts(cells: list[dict]) -> dict[str, int]:
    tally = {verdict: 0 for verdict in LADDER}
    for cell in cells:
        tally[cell["verdict"]] += 1
    return {k: v for k, v in tally.items() if v}


def legend_lines() -> list[str]:
    lines = [f"- `{SYMBOL[v]}` **{v}**: {MEANING[v]}" for v in LADDER]
    lines.append("- `KX` / `KD`: a known break whose underlying verdict is incompatible / diverged; "
                 "`!` after a symbol: declared as a known break, but it no longer breaks (stale declaration)")
    return lines


def markdown(report: dict) -> str:
    cells = report["cells"]
    lines = ["# compat report", "",
             f"Run {report['created']} · compat {report['compat']} · python {report['host']['python']} · "
             f"torch {report['host']['torch']} · matrix `{report['matrix']}`", "",
             "Totals: " + ", ".join(f"{k} {v}" for k, v in counts(cells).items()), "",
             *change_lines(report),
             "Rows: the release that **saved** the checkpoint (producer). Columns: the release that **loads** it "
             "(consumer). A probe (a behaviour, one verdict per release) is a single row.", "",
             "Legend:", *legend_lines(), ""]
    grids = _grids(cells)
    for (library, recipe), grid in sorted(grids.items()):
        versions = grid["versions"]
        corner, rows = _table(grid)
        lines += [f"## {library} / {recipe}", "", f"| {corner} | " + " | ".join(versions) + " |",
                  "|---|" + "---|" * len(versions)]
        for label, row in rows:
            lines.append(f"| **{label}** | " + " | ".join(_symbol(cell) for cell in row) + " |")
        lines.append("")
    groups = known_break_groups(cells)
    if groups:
        lines += ["## Known breaks", "",
                  "Declared in the matrix; upstream-undocumented ones first. Each with the verdicts underneath and one "
                  "example's evidence.", ""]
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
    evidence = [c for c in cells if c["verdict"] not in ("identical", "known-break") or c.get("stale_known_break")]
    if evidence:
        lines += ["## Evidence", "", "Every other cell that is not identical, worst first.", ""]
        for cell in sorted(evidence, key=lambda c: (-LADDER.index(c["verdict"]), c["id"])):
            lines += _evidence_markdown(cell)
    return "\n".join(lines) + "\n"


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


def _evidence_markdown(cell: dict) -> list[str]:
    lines = [f"### `{cell['id']}`: {cell['verdict']}"
             + (f" (underlying: {cell['underlying']})" if cell["underlying"] != cell["verdict"] else ""), "",
             f"{cell['summary']}", ""]
    if cell.get("known_break"):
        known = cell["known_break"]
        lines += [f"Known break ({known['upstream']}): {known['reason']}"
                  + (f" — {known['link']}" if known.get("link") else "") + f" (declared at {known['declared_at']})",
                  ""]
    if cell.get("stale_known_break"):
        lines += ["**This cell is declared as a known break but no longer breaks: update the matrix.**", ""]
    details = evidence_lines(cell["evidence"])
    if details:
        lines += ["```", *details, "```", ""]
    return lines


def evidence_lines(evidence: dict, limit: int = 12) -> list[str]:
    """A cell's evidence as lines a person reads: keys, shapes, statistics, and the library's own errors verbatim."""
    lines = []
    keys = evidence.get("keys", {})
    for field in ("missing", "unexpected"):
        if keys.get(field):
            shown = keys[field][:limit]
            more = f" (+{len(keys[field]) - limit} more)" if len(keys[field]) > limit else ""
            lines.append(f"{field} keys: {', '.join(shown)}{more}")
    for field in ("shape", "dtype"):
        for change in keys.get(field, [])[:limit]:
            lines.append(f"{field} {change['key']}: {change['producer']} -> {change['consumer']}")
    config = evidence.get("config") or {}
    for field, label in (("unknown_fields", "adapter config fields this release does not know"),
                         ("new_fields", "fields this release has that the producer did not write")):
        if config.get(field):
            lines.append(f"{label}: {', '.join(config[field][:limit])}")
    for name, change in (config.get("changed_defaults") or {}).items():
        lines.append(f"default of {name} changed: {change['producer']!r} -> {change['consumer']!r}")
    lines += [f"load warning: {message[:300]}" for message in evidence.get("load_warnings", [])[:limit]]
    if evidence.get("adapter"):
        own = evidence["adapter"].get("vs_own_base", {})
        lines.append(f"adapter applied: {evidence['adapter'].get('applied')} (output vs this release's base: max abs "
                     f"{own.get('max_abs')}, cosine {own.get('cosine')})")
    if evidence.get("rule"):
        lines.append(f"conversion rule: {json.dumps(evidence['rule'])[:600]}")
    lines += [f"rule: {note}" for note in evidence.get("rule_notes", [])[:limit]]
    if evidence.get("tensors_changed_on_load"):
        lines.append(f"tensors changed on load: {', '.join(evidence['tensors_changed_on_load'][:limit])}")
    for name, stats in evidence.get("outputs", {}).items():
        if stats.get("shape_match"):
            lines.append(f"output {name}: bitwise {stats.get('bitwise')}, max abs {stats.get('max_abs')}, "
                         f"max rel {stats.get('max_rel')}, cosine {stats.get('cosine')}")
        else:
            lines.append(f"output {name}: {json.dumps(stats)}")
    for field in ("load_error", "forward_error", "reason"):
        if evidence.get(field):
            lines.append(f"{field.replace('_', ' ')}:")
            lines += ["  " + line for line in evidence[field].strip().splitlines()[:40]]
    return lines


def _changes_html(report: dict) -> str:
    lines = change_lines(report)
    if not lines:
        return ""
    body = "".join(f"<li>{html.escape(line[2:])}</li>" if line.startswith("- ") else
                   f"<p>{html.escape(line.strip('#* '))}</p>" for line in lines[1:] if line)
    return f"<section id='changes'><h2>{html.escape(lines[0].lstrip('# '))}</h2>{body}</section>"


def _anchor(text: str) -> str:
    return "c-" + "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


SCRIPT = """
function applyFilters() {
  const lib = document.getElementById('f-library').value, rec = document.getElementById('f-recipe').value,
        ver = document.getElementById('f-verdict').value;
  const keep = (el) => (!lib || el.dataset.library === lib) &&
                       (!rec || (el.dataset.recipes || el.dataset.recipe).split(' ').includes(rec));
  document.querySelectorAll('section.grid').forEach(el => { el.hidden = !keep(el); });
  document.querySelectorAll('td[data-verdict]').forEach(td => {
    td.classList.toggle('dim', !!ver && td.dataset.verdict !== ver); });
  document.querySelectorAll('details.evidence').forEach(el => {
    el.hidden = !keep(el) || (!!ver && !el.dataset.verdicts.split(' ').includes(ver)); });
}
function openTarget(id) {
  const target = document.getElementById(id);
  if (target) { target.open = true; target.scrollIntoView(); }
}
document.querySelectorAll('select.filter').forEach(el => el.addEventListener('change', applyFilters));
document.querySelectorAll('td a').forEach(a => a.addEventListener('click', () => openTarget(a.hash.slice(1))));
if (location.hash) openTarget(location.hash.slice(1));
"""


def html_page(report: dict) -> str:
    """One self-contained page: inline style and script, nothing fetched from anywhere."""
    cells = report["cells"]
    esc = html.escape
    grids = _grids(cells)

    def options(name: str, values) -> str:
        return (f"<label>{name} <select class='filter' id='f-{name}'><option value=''>all</option>"
                + "".join(f"<option>{esc(v)}</option>" for v in values) + "</select></label> ")

    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>compat report</title><style>",
        "body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}",
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:center;font-size:13px}",
        "th.row{text-align:right}td a{color:inherit;text-decoration:none;display:block}td.dim{opacity:.15}",
        "pre{background:#f6f6f6;padding:8px;overflow-x:auto;font-size:12px}.legend span{padding:0 6px;margin-right:4px}",
        "details{margin:4px 0}summary{cursor:pointer}.filters{position:sticky;top:0;background:#fff;padding:.5em 0}",
        "</style></head><body>",
        "<h1>compat report</h1>",
        f"<p>Run {esc(report['created'])} · compat {esc(report['compat'])} · python {esc(report['host']['python'])}"
        f" · torch {esc(report['host']['torch'])} · matrix <code>{esc(report['matrix'])}</code></p>",
        "<p>Totals: " + ", ".join(f"{esc(k)} {v}" for k, v in counts(cells).items()) + "</p>",
        _changes_html(report),
        "<p class='filters'>" + options("library", sorted({lib for lib, _ in grids}))
        + options("recipe", sorted({rec for _, rec in grids})) + options("verdict", [v for v in LADDER]) + "</p>",
        "<p>Rows: the release that saved the checkpoint (producer). Columns: the release that loads it (consumer)."
        " A probe (a behaviour, one verdict per release) is a single row. Click a cell for its evidence.</p>"
        "<p class='legend'>"]
    for verdict in LADDER:
        parts.append(f"<span style='background:{COLOUR[verdict]}'>{esc(SYMBOL[verdict])}</span>"
                     f"{esc(verdict)}: {esc(MEANING[verdict])}<br>")
    parts.append("</p>")
    for (library, recipe), grid in sorted(grids.items()):
        corner, rows = _table(grid)
        parts.append(f"<section class='grid' data-library='{esc(library)}' data-recipe='{esc(recipe)}'>"
                     f"<h2>{esc(library)} / {esc(recipe)}</h2><table><tr><th>{esc(corner)}</th>"
                     + "".join(f"<th>{esc(v)}</th>" for v in grid["versions"]) + "</tr>")
        for label, row in rows:
            parts.append(f"<tr><th class='row'>{esc(label)}</th>")
            for cell in row:
                if cell is None:
                    parts.append("<td></td>")
                    continue
                target = cell["known_break"]["declared_at"] if cell["verdict"] == "known-break" else cell["id"]
                parts.append(f"<td data-verdict='{esc(cell['verdict'])}' style='background:"
                             f"{COLOUR[cell['verdict']]}' title='{esc(cell['id'])}: {esc(cell['verdict'])}: "
                             f"{esc(cell['summary'])}'><a href='#{_anchor(target)}'>{esc(_symbol(cell))}</a></td>")
            parts.append("</tr>")
        parts.append("</table></section>")
    groups = known_break_groups(cells)
    if groups:
        parts.append("<h2>Known breaks</h2>")
    for group in groups:
        known, members = group["known_break"], group["cells"]
        link = f" <a href='{esc(known['link'])}'>{esc(known['link'])}</a>" if known.get("link") else ""
        underneath = ", ".join(f"{k} {v}" for k, v in sorted(group["underlying"].items()))
        parts.append(f"<details class='evidence' id='{_anchor(known['declared_at'])}' "
                     f"data-library='{esc(members[0]['library'])}' data-recipes='{esc(' '.join(group['recipes']))}' "
                     f"data-verdicts='known-break'><summary><b>{esc(known['reason'])}</b> "
                     f"({len(members)} cells: {esc(underneath)})</summary><p>recipes: "
                     f"{esc(', '.join(group['recipes']))}; upstream: {esc(known['upstream'])}{link}; declared at "
                     f"<code>{esc(known['declared_at'])}</code></p><p>Example <code>{esc(members[0]['id'])}</code>: "
                     f"{esc(members[0]['summary'])}</p><pre>{esc(chr(10).join(evidence_lines(members[0]['evidence'])))}"
                     "</pre></details>")
    parts.append("<h2>Evidence</h2>")
    for cell in sorted((c for c in cells if c["verdict"] not in ("identical", "known-break")
                        or c.get("stale_known_break")), key=lambda c: c["id"]):
        parts.append(f"<details class='evidence' id='{_anchor(cell['id'])}' data-library='{esc(cell['library'])}' "
                     f"data-recipe='{esc(cell['recipe'])}' data-verdicts='{esc(cell['verdict'])}'><summary>"
                     f"<code>{esc(cell['id'])}</code>: <b>{esc(cell['verdict'])}</b> {esc(cell['summary'])}</summary>")
        parts.append("<pre>" + esc("\n".join(evidence_lines(cell["evidence"]))) + "</pre></details>")
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(parts)
