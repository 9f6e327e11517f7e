import json

from compat.host.report import build_report, known_break_groups, markdown, write_report


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


def test_the_report_leads_with_a_summary_and_groups_identical_evidence():
    """18 cells of one failed environment used to come, one block each, before the first real finding."""
    failed = {"status": "error", "reason": "consumer worker failed: exit code 1"}
    diverged = {"outputs": {"o": {"shape_match": True, "bitwise": False, "max_abs": 0.5, "max_rel": 1.0,
                                  "cosine": 0.9}}}
    cells = [cell(p, "9.0", "error", evidence=failed) for p in ("1.0", "2.0", "3.0")] * 6
    cells = [dict(c, id=f"{c['id']}#{n}") for n, c in enumerate(cells)]
    cells += [cell("1.0", "2.0", "diverged", evidence=diverged), cell("1.0", "1.0", "identical")]
    text = markdown(build_report(cells, {}, "m.yaml", "2.13.0"))
    assert text.index("## Summary") < text.index("## lib / r") < text.index("## Evidence")
    assert "| lib | 20 | 1 | 0 | 0 | 1 | 0 | 0 | 18 | 0 |" in text and "**19 red cells are not declared" in text
    evidence = text.split("## Evidence")[1]
    assert evidence.index("diverged") < evidence.index("error")  # the silent break first
    assert evidence.count("consumer worker failed: exit code 1") == 1  # one block for the 18 cells
    assert "### 18 cells: error" in evidence and "(+8 more)" in evidence


def test_a_red_cell_says_what_to_do_next():
    renamed = {"keys": {"missing": ["a.ff.w"], "unexpected": ["a.net.w"], "shapes": {"a.ff.w": [4], "a.net.w": [4]}},
               "load_error": "RuntimeError: Error(s) in loading state_dict for M:\n\tMissing key(s): a.ff.w"}
    cells = [cell("1.0", "1.0", "identical"), cell("1.0", "1.5", "equivalent"),
             cell("1.0", "2.0", "incompatible", evidence=renamed), cell("1.0", "3.0", "converted")]
    text = markdown(build_report(cells, {}, "m.yaml", "2.13.0"))
    step = text.split("`lib/r/1.0->2.0`: incompatible")[1].split("```")[0]
    assert "**What to do**: 1 key looks renamed (same shapes), e.g. a.net.w -> a.ff.w" in step
    assert "the matrix's conversion rule makes it load in 3.0" in step
    assert "the newest release that reads it as saved: 1.5" in step


def test_a_summary_names_what_went_wrong_not_the_header_of_the_message():
    from compat.host.matrix import RecipeSpec, Tolerance
    from compat.host.verdicts import raw_verdict

    finding = {"kind": "state-dict", "status": "ok", "keys": {"missing": ["a"], "unexpected": ["b"]},
               "load_error": "RuntimeError: Error(s) in loading state_dict for TransformerWrapper:\n\t"
                             'Missing key(s) in state_dict: "a".'}
    verdict, summary = raw_verdict(finding, RecipeSpec("r", Tolerance(1e-5, 1e-4)))
    assert verdict == "incompatible" and summary.endswith('TransformerWrapper: Missing key(s) in state_dict: "a".')


def test_the_report_leads_with_what_unreleased_code_breaks():
    """A working tree that no longer reads what the newest release reads is named first, with the releases."""
    tree = "2.0+worktree"
    source = {"kind": "path", "location": "/src/lib", "digest": "tree-1", "wheel": "w.whl", "commit": ""}
    cells = [cell(p, c, v) for p, c, v in [
        ("1.0", "2.0", "identical"), ("1.5", "2.0", "identical"), ("0.9", "2.0", "incompatible"),
        ("1.0", tree, "incompatible"), ("1.5", tree, "diverged"), ("2.0", tree, "incompatible"),
        ("0.9", tree, "incompatible"),  # the newest release does not read it either: not a new regression
        (tree, tree, "identical")]]
    environments = {"lib": {"0.9": {}, "1.0": {}, "1.5": {}, "2.0": {}, tree: {"source": source}}}
    report = build_report(cells, environments, "m.yaml", "2.13.0")
    text = markdown(report)
    lead = ("unreleased code breaks checkpoints of lib 1.0 ... 2.0 (3 releases, 3 cells; recipes: r) that 2.0 "
            "reads: lib 2.0+worktree (path /src/lib)")
    assert text.index(lead) < text.index("## Summary")
    # the same tree reading everything is said too
    fine = [cell("1.0", tree, "identical"), cell("2.0", tree, "equivalent")]
    assert ("lib 2.0+worktree (path /src/lib) reads the checkpoints of every release it was checked against "
            "(2 cells)") in markdown(build_report(fine, environments, "m.yaml", "2.13.0"))
    assert "Unreleased versions" not in markdown(build_report(cells[:3], {"lib": {"1.0": {}}}, "m.yaml", "2.13.0"))


def test_conversions_the_search_found_are_listed_once_per_rule_and_written_as_data(tmp_path):
    import yaml

    renames = {"rename": {"net.w": "ff.w"}}
    lossy = {"rename": {"n.weight": "n.gamma"}, "steps": [{"op": "drop", "key": "n.bias", "shape": [4]}]}
    searched = {"search": {"rule": renames, "verdict": "converted", "before": "1 missing"}, "rule": renames}
    cells = [cell("1.0", "2.0", "converted", evidence=searched), cell("1.0", "3.0", "converted", evidence=searched),
             cell("2.0", "3.0", "lossy", evidence={"search": {"rule": lossy, "verdict": "lossy"}, "rule": lossy}),
             cell("1.0", "1.0", "identical")]
    report = build_report(cells, {}, "m.yaml", "2.13.0")
    text = markdown(report)
    assert "**lib** converted: 1 rename (r; 2 release pairs: 1.0 -> 2.0, 1.0 -> 3.0)" in text
    assert "**lib** lossy: 1 rename, 1 drop (r; 1 release pairs: 2.0 -> 3.0)" in text
    paths = write_report(report, tmp_path)
    catalogue = yaml.safe_load((tmp_path / "conversions.yaml").read_text())
    assert tmp_path / "conversions.yaml" in paths
    assert catalogue["lib"][0] == {"verdict": "converted", "recipes": ["r"], "pairs": ["1.0 -> 2.0", "1.0 -> 3.0"],
                                   "rule": renames}
    write_report(build_report(cells[3:], {}, "m.yaml", "2.13.0"), tmp_path)  # a run with none: no stale file
    assert not (tmp_path / "conversions.yaml").exists()
