"""The HTML report in a real headless browser (Debian's chromium): grid, filters' markup, and a cell's evidence."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from compat.host.history import changes
from compat.host.report import build_report, write_report

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent / "scripts"))
import screenshot  # noqa: E402

if not shutil.which("chromium") and not os.environ.get("CI"):
    pytest.skip("chromium is not installed (apt-get install chromium); CI installs it", allow_module_level=True)


def cell(producer, consumer, verdict, evidence=None):
    return {"id": f"lib/dec/{producer}->{consumer}", "library": "lib", "recipe": "dec", "producer": producer,
            "consumer": consumer, "verdict": verdict, "underlying": verdict, "summary": f"{verdict} because",
            "evidence": evidence or {}, "known_break": None, "stale_known_break": False}


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    diverged = {"outputs": {"logits": {"shape_match": True, "bitwise": False, "max_abs": 0.7, "max_rel": 70.4,
                                       "cosine": 0.9968}}}
    refused = {"keys": {"missing": ["layers.1.ff.0.weight"], "unexpected": ["layers.1.net.0.weight"]},
               "load_error": "RuntimeError: Error(s) in loading state_dict for TransformerWrapper"}
    cells = [cell("1.0", "1.0", "identical"), cell("1.0", "2.0", "diverged", diverged),
             cell("2.0", "1.0", "incompatible", refused), cell("2.0", "2.0", "identical")]
    folder = tmp_path_factory.mktemp("html")
    return write_report(build_report(cells, {}, "matrix.yaml", "2.13.0"), folder)[2]


def test_the_grid_and_the_opened_evidence_render(page):
    dom = screenshot.run_page(page, "--dump-dom", anchor="c-lib_dec_2.0-_1.0")
    assert re.search(r"<h2>lib / dec</h2><table>", dom)
    assert dom.count("<td data-verdict=") == 4
    opened = re.search(r'<details class="evidence" id="c-lib_dec_2.0-_1.0"[^>]*open=""', dom)
    assert opened, "the script did not open the evidence of the cell named in the URL"
    assert "layers.1.net.0.weight" in dom and "RuntimeError: Error(s) in loading state_dict" in dom


def test_a_screenshot_is_taken(page, tmp_path):
    out = screenshot.screenshot(page, tmp_path / "shot.png", anchor="c-lib_dec_1.0-_2.0")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


@pytest.fixture(scope="module")
def page_with_news(tmp_path_factory) -> Path:
    """A report the size users see: two libraries, twenty releases, and forty changes since the baseline."""
    versions = [f"1.{n}" for n in range(20)]
    cells = [dict(cell(p, c, "identical" if p <= c else "incompatible"), library=library,
                  id=f"{library}/dec/{p}->{c}") for library in ("lib", "other") for p in versions for c in versions]
    baseline = build_report([dict(c, verdict="incompatible", underlying="incompatible") for c in cells], {},
                            "matrix.yaml", "2.13.0")
    report = build_report(cells, {}, "matrix.yaml", "2.13.0")
    report["changes"] = changes(baseline, report)
    assert len(report["changes"]["changed"]) > 40
    return write_report(report, tmp_path_factory.mktemp("news"))[2]


def test_the_news_since_the_baseline_is_html_not_markdown(page_with_news):
    dom = screenshot.run_page(page_with_news, "--dump-dom")
    news = re.search(r'<details id="changes".*?</details>', dom, re.S).group(0)
    assert "New green cells" in news and "<code>lib/dec/1.0-&gt;1.1</code>" in news
    assert "**" not in news and "`" not in news


MEASURE = """<script>
const box = (el) => el.getBoundingClientRect();
document.title = JSON.stringify({height: window.innerHeight, summary: box(document.getElementById('summary')).bottom,
  grid: box(document.querySelector('section.grid')).top,
  row: box(document.querySelector('section.grid tr:nth-child(4)')).bottom});
</script></body>"""


def test_the_summary_and_the_first_grid_are_above_the_fold_at_1400x1000(page_with_news, tmp_path):
    measured = tmp_path / "measured.html"
    measured.write_text(page_with_news.read_text().replace("</body>", MEASURE))
    dom = screenshot.run_page(measured, "--dump-dom", "--window-size=1400,1000")
    box = json.loads(html.unescape(re.search(r"<title>(.*?)</title>", dom).group(1)))
    assert box["height"] > 800, box  # the viewport of a 1400x1000 window (less the browser's own bars)
    assert box["summary"] < box["grid"] and box["row"] < box["height"], box  # the grid's first rows are visible
