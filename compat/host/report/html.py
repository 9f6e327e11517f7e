"""index.html: the same content as report.md as one self-contained page (inline style and script, nothing fetched),
built from the report's data, never from Markdown strings. Above the fold at 1400x1000: the summary per library, the
news since the baseline folded to one line when long, the filters and the first grid."""

from __future__ import annotations

import html

from compat.host.install_checks import summary as install_summary
from compat.host.report.evidence import evidence_lines
from compat.host.report.markdown import CHANGE_TITLES, SHOWN
from compat.host.report.reading import (
    SUMMARY_COLUMNS,
    SYMBOL,
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
from compat.host.verdicts import LADDER, MEANING

COLOUR = {"identical": "#2e7d32", "equivalent": "#66bb6a", "converted": "#29b6f6", "known-break": "#9e9e9e",
          "lossy": "#ffca28", "diverged": "#e53935", "incompatible": "#fb8c00", "not-applicable": "#eeeeee",
          "error": "#6a1b9a"}
OPEN_CHANGES = 8  # a change list longer than this starts folded, so the grids stay above the fold
STYLE = """
body{font-family:system-ui,sans-serif;margin:1em 2em;color:#222}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:center;font-size:13px}h1{margin:.2em 0}h2{margin:.6em 0 .2em}
th.row{text-align:right}td a{color:inherit;text-decoration:none;display:block}td.dim{opacity:.15}
table.summary td{text-align:right}table.summary td:first-child{text-align:left}td.bad{color:#c62828;font-weight:bold}
pre{background:#f6f6f6;padding:8px;overflow-x:auto;font-size:12px}.legend span{padding:0 6px;margin:0 4px 0 10px}
.legend{font-size:12px}details{margin:4px 0}summary{cursor:pointer}p{margin:.4em 0}
.filters{position:sticky;top:0;background:#fff;padding:.3em 0;margin:0}
"""
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
esc = html.escape


def anchor(text: str) -> str:
    return "c-" + "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


def html_page(report: dict) -> str:
    cells = report["cells"]
    by_grid = grids(cells)
    groups = evidence_groups(cells)
    target = {cell["id"]: anchor(group["cells"][0]["id"]) for group in groups for cell in group["cells"]}
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>compat report</title>"
             f"<style>{STYLE}</style></head><body>", "<h1>compat report</h1>",
             f"<p>Run {esc(report['created'])} · compat {esc(report['compat'])} · python "
             f"{esc(report['host']['python'])} · torch {esc(report['host']['torch'])} · matrix "
             f"<code>{esc(report['matrix'])}</code> · totals: "
             + ", ".join(f"{esc(k)} {v}" for k, v in counts(cells).items()) + "</p>",
             _unreleased(report), _summary(cells), _changes(report), _filters(by_grid), _legend()]
    for (library, recipe), grid in sorted(by_grid.items()):
        parts.append(_grid(library, recipe, grid, target))
    parts += _known_breaks(cells)
    parts.append(_uninstallable(report))
    if groups:
        parts.append("<h2>Evidence</h2><p>Every other cell that is not identical, silent breaks first; cells with the "
                     "same evidence are one entry.</p>")
    parts += [_evidence_group(group) for group in groups]
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(parts)


def _unreleased(report: dict) -> str:
    """Regression in the making first: what unreleased versions no longer read."""
    lead = unreleased_lead(report["cells"], report.get("environments", {}))
    if not lead:
        return ""
    items = "".join(f"<li class='{'bad' if e['broken'] else ''}'>{esc(lead_sentence(e))}</li>" for e in lead)
    return f"<section id='unreleased'><h2>Unreleased versions</h2><ul>{items}</ul></section>"


def _uninstallable(report: dict) -> str:
    """Releases the matrix declares it cannot install here: tried, with uv's last line; stale declarations first."""
    outcomes = sorted(report.get("uninstallable", []), key=lambda o: (not o["installs"], o["library"]))
    if not outcomes:
        return ""
    items = "".join(f"<li class='{'bad' if o['installs'] else ''}'>{esc(install_summary(o))}</li>" for o in outcomes)
    return f"<section id='uninstallable'><h2>Releases that cannot be installed here</h2><ul>{items}</ul></section>"


def _summary(cells: list[dict]) -> str:
    rows = library_summary(cells)
    head = "".join(f"<th>{esc(title)}</th>" for _, title in SUMMARY_COLUMNS)
    body = "".join(
        f"<tr><td>{esc(row['library'])}</td><td>{row['cells']}</td>"
        + "".join(f"<td class='{'bad' if key in ('silent', 'refuses', 'errors') and row[key] else ''}'>{row[key]}</td>"
                  for key, _ in SUMMARY_COLUMNS)
        + f"<td>{row['declared']}</td><td class='{'bad' if row['undeclared_red'] else ''}'>{row['undeclared_red']}"
          "</td></tr>" for row in rows)
    return (f"<section id='summary'><table class='summary'><tr><th>library</th><th>cells</th>{head}"
            f"<th>declared known breaks</th><th>red, not declared</th></tr>{body}</table></section>")


def _changes(report: dict) -> str:
    news = report.get("changes")
    if not news:
        return ""
    baseline = news["baseline"]
    kinds = {kind: [c for c in news["changed"] if c["kind"] == kind] for kind, _ in CHANGE_TITLES}
    tally = ", ".join(f"{len(kinds[kind])} {title.lower()}" for kind, title in CHANGE_TITLES if kinds[kind])
    tally += f"{', ' if tally else ''}{len(news['new_releases'])} releases seen for the first time" \
        if news["new_releases"] else ""
    body = []
    for kind, title in CHANGE_TITLES:
        if kinds[kind]:
            items = "".join(f"<li><code>{esc(c['id'])}</code>: {esc(c['before'])} → <b>{esc(c['after'])}</b> "
                            f"({esc(c['summary'])})</li>" for c in kinds[kind])
            body.append(f"<p><b>{esc(title)}</b> ({len(kinds[kind])}):</p><ul>{items}</ul>")
    if news["new_releases"]:
        body.append(f"<p><b>Releases seen for the first time</b>: {esc(', '.join(news['new_releases']))} "
                    f"({len(news['new_cells'])} new cells)</p>")
    if news["removed_cells"]:
        body.append(f"<p><b>Cells no longer in the matrix</b>: {len(news['removed_cells'])}</p>")
    shown = len(news["changed"]) <= OPEN_CHANGES
    return (f"<details id='changes'{' open' if shown else ''}><summary><b>Changes since the baseline</b> "
            f"({esc(str(baseline.get('created')))}, compat {esc(str(baseline.get('compat')))}): "
            f"{esc(tally or 'no verdict changed')}</summary>{''.join(body)}</details>")


def _filters(by_grid: dict) -> str:
    def options(name: str, values) -> str:
        return (f"<label>{name} <select class='filter' id='f-{name}'><option value=''>all</option>"
                + "".join(f"<option>{esc(v)}</option>" for v in values) + "</select></label> ")

    return ("<p class='filters'>" + options("library", sorted({lib for lib, _ in by_grid}))
            + options("recipe", sorted({rec for _, rec in by_grid})) + options("verdict", LADDER)
            + " Rows: the release that saved the checkpoint; columns: the release that loads it. Click a cell for its "
              "evidence.</p>")


def _legend() -> str:
    return "<p class='legend'>" + "".join(
        f"<span style='background:{COLOUR[v]}' title='{esc(MEANING[v])}'>{esc(SYMBOL[v])}</span>{esc(v)}"
        for v in LADDER) + " · K after a symbol: declared known break · ! stale declaration</p>"


def _grid(library: str, recipe: str, grid: dict, target: dict[str, str]) -> str:
    corner, rows = table(grid)
    parts = [f"<section class='grid' data-library='{esc(library)}' data-recipe='{esc(recipe)}'>"
             f"<h2>{esc(library)} / {esc(recipe)}</h2><table><tr><th>{esc(corner)}</th>"
             + "".join(f"<th>{esc(v)}</th>" for v in grid["versions"]) + "</tr>"]
    for label, row in rows:
        parts.append(f"<tr><th class='row'>{esc(label)}</th>")
        for cell in row:
            if cell is None:
                parts.append("<td></td>")
                continue
            link = anchor(cell["known_break"]["declared_at"]) if cell["verdict"] == "known-break" else \
                target.get(cell["id"], anchor(cell["id"]))
            parts.append(f"<td data-verdict='{esc(cell['verdict'])}' style='background:{COLOUR[cell['verdict']]}' "
                         f"title='{esc(cell['id'])}: {esc(cell['verdict'])}: {esc(cell['summary'])}'>"
                         f"<a href='#{link}'>{esc(symbol(cell))}</a></td>")
        parts.append("</tr>")
    return "".join(parts) + "</table></section>"


def _known_breaks(cells: list[dict]) -> list[str]:
    groups = known_break_groups(cells)
    parts = ["<h2>Known breaks</h2>"] if groups else []
    for group in groups:
        known, members = group["known_break"], group["cells"]
        link = f" <a href='{esc(known['link'])}'>{esc(known['link'])}</a>" if known.get("link") else ""
        underneath = ", ".join(f"{k} {v}" for k, v in sorted(group["underlying"].items()))
        parts.append(f"<details class='evidence' id='{anchor(known['declared_at'])}' "
                     f"data-library='{esc(members[0]['library'])}' data-recipes='{esc(' '.join(group['recipes']))}' "
                     f"data-verdicts='known-break'><summary><b>{esc(known['reason'])}</b> "
                     f"({len(members)} cells: {esc(underneath)})</summary><p>recipes: "
                     f"{esc(', '.join(group['recipes']))}; upstream: {esc(known['upstream'])}{link}; declared at "
                     f"<code>{esc(known['declared_at'])}</code></p><p>Example <code>{esc(members[0]['id'])}</code>: "
                     f"{esc(members[0]['summary'])}</p><pre>{esc(chr(10).join(evidence_lines(members[0]['evidence'])))}"
                     "</pre></details>")
    return parts


def _evidence_group(group: dict) -> str:
    members = group["cells"]
    first = members[0]
    recipes = " ".join(sorted({c["recipe"] for c in members}))
    count = f" ({len(members)} cells)" if len(members) > 1 else ""
    parts = [f"<details class='evidence' id='{anchor(first['id'])}' data-library='{esc(first['library'])}' "
             f"data-recipes='{esc(recipes)}' data-verdicts='{esc(group['verdict'])}'><summary>"
             f"<code>{esc(first['id'])}</code>{esc(count)}: <b>{esc(group['verdict'])}</b> "
             f"{esc(group['summary'])}</summary>"]
    if len(members) > 1:
        parts.append("<p>Cells: " + ", ".join(f"<code>{esc(c['id'])}</code>" for c in members[:SHOWN])
                     + (f" (+{len(members) - SHOWN} more)" if len(members) > SHOWN else "") + "</p>")
    if group["stale"]:
        parts.append("<p><b>Declared as a known break but it no longer breaks: update the matrix.</b></p>")
    if group["next_step"]:
        parts.append(f"<p><b>What to do</b>: {esc(group['next_step'])}</p>")
    parts.append(f"<pre>{esc(chr(10).join(group['lines']))}</pre></details>")
    return "".join(parts)
