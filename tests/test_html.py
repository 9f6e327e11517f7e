"""The HTML report in a real headless browser (Debian's chromium): grid, filters' markup, and a cell's evidence."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from compat.report import build_report, write_report

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
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
