from hypothesis import given
from hypothesis import strategies as st
from packaging.specifiers import SpecifierSet

from compat.host.declare import draft_reason, propose
from compat.host.matrix import KnownBreak

VERSIONS = ["1.0", "1.1", "1.2", "2.0", "2.1"]


def cells_from(bad: set[tuple[str, str]], recipe: str = "r") -> list[dict]:
    cells = []
    for p in VERSIONS:
        for c in VERSIONS:
            underlying = "incompatible" if (p, c) in bad else "identical"
            cells.append({"library": "lib", "recipe": recipe, "producer": p, "consumer": c, "underlying": underlying,
                          "verdict": underlying, "summary": "", "evidence": {"status": "ok", "keys": {
                              "missing": ["a.ff.w"], "unexpected": ["a.net.w"], "shape": [], "dtype": [],
                              "shapes": {"a.ff.w": [4], "a.net.w": [4]}}}})
    return cells


def covered(declarations: list[dict], recipe: str, p: str, c: str) -> bool:
    return any(KnownBreak(SpecifierSet(d["producers"]), SpecifierSet(d["consumers"]),
                          tuple(d["recipes"]) if "recipes" in d else None, d["reason"], None, "undocumented", "")
               .covers(recipe, p, c) for d in declarations)


@given(st.sets(st.tuples(st.sampled_from(VERSIONS), st.sampled_from(VERSIONS))))
def test_proposals_cover_exactly_the_bad_cells(bad):
    declarations = propose(cells_from(bad))
    for p in VERSIONS:
        for c in VERSIONS:
            assert covered(declarations, "r", p, c) == ((p, c) in bad)


def test_a_layout_boundary_is_two_rectangles_with_a_link_and_no_guessed_renames():
    old, new = VERSIONS[:3], VERSIONS[3:]
    bad = {(p, c) for p in old for c in new} | {(p, c) for p in new for c in old}
    declarations = propose(cells_from(bad), "https://github.com/o/lib")
    assert [(d["producers"], d["consumers"]) for d in declarations] == [(">=1.0,<2.0", ">=2.0"),
                                                                         (">=2.0", ">=1.0,<2.0")]
    assert declarations[0]["link"] == "https://github.com/o/lib/compare/1.2...2.0"
    assert declarations[0]["reason"] == "layout changed (1.2 -> 2.0): 1 key missing, 1 unexpected"


def test_a_layout_reason_says_what_the_search_found_not_names_that_look_alike():
    cell = cells_from({("1.0", "2.0")})[3]
    cell["evidence"]["search"] = {"rule": {"rename": {"a.net.w": "a.ff.w"}}, "verdict": "diverged",
                                  "summary": "logits: max abs 3.78"}
    assert draft_reason(cell) == ("layout changed (1.0 -> 2.0): 1 key missing, 1 unexpected; with the conversion the "
                                  "search found (1 rename) it is diverged: logits: max abs 3.78")
    change = {"key": "rotary.inv_freq", "producer": [8], "consumer": [16]}
    reshaped = {"producer": "1", "consumer": "2", "underlying": "incompatible", "summary": "", "evidence": {
        "status": "ok", "sizing": {}, "keys": {"missing": [], "unexpected": [], "dtype": [], "shapes": {},
                                               "shape": [change]}}}
    assert draft_reason(reshaped) == ("layout changed (1 -> 2): 0 keys missing, 0 unexpected, 1 shape changed (e.g. "
                                      "rotary.inv_freq [8] -> [16]), no constructor argument of the consumer builds it "
                                      "at the producer's size")


def test_reasons_of_broken_releases():
    broken = {"producer": "1", "consumer": "2", "underlying": "incompatible", "summary": "",
              "evidence": {"status": "broken", "reason": "producer 1: TypeError: boom\ntrace"}}
    assert draft_reason(broken) == "a release fails on this config (1 -> 2): producer 1: TypeError: boom"


def test_a_probe_gets_one_range_per_stretch_of_failing_releases():
    failing = {"1.1", "1.2", "2.1"}
    cells = [c for c in cells_from({(v, v) for v in failing}, recipe="probe") if c["producer"] == c["consumer"]]
    declarations = propose(cells, "https://github.com/o/lib", tag_prefix="v")
    assert [(d["producers"], d["consumers"]) for d in declarations] == [(">=1.1,<2.0", ">=1.1,<2.0"),
                                                                         (">=2.1", ">=2.1")]
    assert all(covered(declarations, "probe", v, v) == (v in failing) for v in VERSIONS)
    assert declarations[0]["link"] == "https://github.com/o/lib/compare/v1.0...v1.1"
