import json

from compat.report import build_report, known_break_groups, markdown, write_report


def cell(producer, consumer, verdict, underlying=None, known=None, **extra):
    return {"id": f"lib/r/{producer}->{consumer}", "library": "lib", "recipe": "r", "producer": producer,
            "consumer": consumer, "verdict": verdict, "underlying": underlying or verdict, "summary": "why",
            "evidence": extra.get("evidence", {}), "known_break": known, "stale_known_break": False}


KNOWN = {"reason": "renamed", "link": "https://x", "upstream": "undocumented", "declared_at": "m.yaml:9"}


def test_grid_legend_known_breaks_and_evidence(tmp_path):
    cells = [cell("1.0", "1.0", "identical"), cell("1.0", "2.0", "known-break", "incompatible", KNOWN,
                                                   evidence={"keys": {"missing": ["a"], "unexpected": ["b"]},
                                                             "load_error": "RuntimeError: Missing key(s)"}),
             cell("2.0", "1.0", "diverged", evidence={"outputs": {"o": {"shape_match": True, "bitwise": False,
                                                                          "max_abs": 0.5, "max_rel": 1.0,
                                                                          "cosine": 0.9}}}),
             cell("2.0", "2.0", "identical")]
    report = build_report(cells, {}, "m.yaml", "2.13.0")
    text = markdown(report)
    assert "| **1.0** | = | KX |" in text and "| **2.0** | D | = |" in text
    assert "### renamed" in text and "missing keys: a" in text and "RuntimeError: Missing key(s)" in text
    assert "### `lib/r/2.0->1.0`: diverged" in text and "max abs 0.5" in text
    paths = write_report(report, tmp_path)
    assert json.loads(paths[0].read_text())["schema"] == 1
    page = paths[2].read_text()
    assert page.count("<details") == 2 and "http" not in page.split("<body>")[0]  # self-contained: no external assets


def test_undocumented_known_breaks_come_first():
    documented = dict(KNOWN, upstream="documented", declared_at="m.yaml:3")
    groups = known_break_groups([cell("1", "2", "known-break", "incompatible", documented),
                                 cell("2", "1", "known-break", "diverged", KNOWN)])
    assert [g["known_break"]["upstream"] for g in groups] == ["undocumented", "documented"]


def test_a_probe_is_one_row_with_a_verdict_per_release(tmp_path):
    cells = [cell("1.0", "1.0", "not-applicable"), cell("2.0", "2.0", "identical"), cell("3.0", "3.0", "incompatible")]
    report = build_report(cells, {}, "m.yaml", "2.13.0")
    text = markdown(report)
    assert "| release | 1.0 | 2.0 | 3.0 |" in text and "| **verdict** | · | = | X |" in text
    assert "producer \\ consumer" not in text.split("## lib / r")[1]
    page = write_report(report, tmp_path)[2].read_text()
    assert "<th>release</th>" in page and page.count("<th class='row'>") == 1
