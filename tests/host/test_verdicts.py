import pytest
from packaging.specifiers import SpecifierSet

from compat.host.matrix import KnownBreak, RecipeSpec, Tolerance
from compat.host.verdicts import best_searched, judge, raw_verdict

RECIPE = RecipeSpec("r", Tolerance(atol=1e-5, rtol=0.0), {"loose": Tolerance(atol=0.1, rtol=0.0)})
CLEAN_KEYS = {"missing": [], "unexpected": [], "shape": [], "dtype": []}


def stats(max_abs, bitwise=False):
    return {"bitwise": bitwise, "shape_match": True, "max_abs": max_abs, "max_rel": max_abs, "cosine": 0.99,
            "ref_max_abs": 1.0}


def finding(kind="state-dict", **outputs):
    return {"kind": kind, "status": "ok", "keys": CLEAN_KEYS, "tensors_changed_on_load": [], "outputs": outputs}


@pytest.mark.parametrize("found, verdict", [
    (finding(out=stats(0.0, bitwise=True)), "identical"),
    (finding(out=stats(1e-6)), "equivalent"),
    (finding(out=stats(1e-3)), "diverged"),
    (finding(loose=stats(1e-3)), "equivalent"),  # per-output tolerance
    (finding(out={"shape_match": False, "bitwise": False}), "diverged"),
    (dict(finding(), keys=dict(CLEAN_KEYS, missing=["a"]), load_error="RuntimeError: x"), "incompatible"),
    (dict(finding(), forward_error="RuntimeError: boom"), "incompatible"),
    ({"status": "broken", "reason": "producer 1.0: RuntimeError"}, "incompatible"),
    ({"status": "not-applicable", "reason": "consumer: no such keyword"}, "not-applicable"),
    ({"status": "error", "reason": "environment failed"}, "error"),
])
def test_ladder(found, verdict):
    assert raw_verdict(found, RECIPE)[0] == verdict


def test_a_rule_that_makes_it_agree_is_converted_and_one_that_does_not_is_not():
    rule = {"rename": {"a.net.w": "a.ff.w"}}
    assert raw_verdict(dict(finding(out=stats(0.0, bitwise=True)), rule=rule), RECIPE)[0] == "converted"
    assert raw_verdict(dict(finding(out=stats(1.0)), rule=rule), RECIPE)[0] == "diverged"


def test_a_converted_summary_counts_what_the_rule_does_in_words_that_agree_with_the_count():
    rule = {"rename": {"a": "b"}, "steps": [{"op": "drop", "key": "c"}, {"op": "drop", "key": "d"}],
            "consumer_args": {"layers": {"x": True}}}
    summary = raw_verdict(dict(finding(out=stats(0.0, bitwise=True)), rule=rule), RECIPE)[1]
    assert summary.startswith("loads after a rule (1 rename, 2 steps, 1 constructor argument); outputs bitwise equal")
    noted = dict(finding(out=stats(0.0, bitwise=True)), rule=rule, rule_notes=["dropped d: all ones"])
    assert raw_verdict(noted, RECIPE)[1].endswith("; 1 step dropped or rounded values the outputs did not need")


def test_tensors_changed_on_load_are_not_identical():
    found = dict(finding(out=stats(0.0, bitwise=True)), tensors_changed_on_load=["w"])
    assert raw_verdict(found, RECIPE) == ("equivalent",
                                          "outputs within tolerance (max abs 0); 1 tensor changed on load")


def test_known_breaks_keep_the_verdict_underneath_and_go_stale():
    known = KnownBreak(SpecifierSet("<1"), SpecifierSet(">=1"), None, "renamed", None, "undocumented", "m.yaml:3")
    broken = judge(dict(finding(), load_error="RuntimeError: missing"), RECIPE, known)
    assert (broken.verdict, broken.underlying, broken.stale_known_break) == ("known-break", "incompatible", False)
    silent = judge(finding(out=stats(1.0)), RECIPE, known)
    assert (silent.verdict, silent.underlying) == ("known-break", "diverged")
    healed = judge(finding(out=stats(0.0, bitwise=True)), RECIPE, known)
    assert healed.verdict == "identical" and healed.stale_known_break


def adapter_finding(applied: bool, base_abs: float = 0.0, keys=CLEAN_KEYS) -> dict:
    found = dict(finding("adapter", output=stats(0.0 if applied else 0.3, bitwise=applied),
                         base=stats(base_abs, bitwise=base_abs == 0.0)), keys=keys,
                 load_warnings=["UserWarning: Found missing adapter keys while loading the checkpoint: [...]"])
    found["adapter"] = {"changed_output_in_producer": True, "applied": applied, "effect": 0.3 if applied else 1e-6,
                        "effect_in_producer": 0.3}
    return found


def test_an_adapter_that_loads_but_is_not_applied_is_diverged_even_with_key_problems():
    verdict, summary = raw_verdict(adapter_finding(False, keys=dict(CLEAN_KEYS, missing=["a"], unexpected=["b"])),
                                   RECIPE)
    assert verdict == "diverged" and summary.startswith("adapter not applied (1 missing, 1 unexpected")
    assert "Found missing adapter keys" in summary
    # a loose tolerance cannot turn a dropped adapter into `equivalent`
    loose = RecipeSpec("r", Tolerance(atol=1.0, rtol=0.0), {})
    assert raw_verdict(adapter_finding(False), loose)[0] == "diverged"


def test_a_base_model_that_differs_makes_the_adapter_unjudgeable():
    verdict, summary = raw_verdict(adapter_finding(True, base_abs=1e-3), RECIPE)
    assert verdict == "diverged" and "base model" in summary
    assert raw_verdict(adapter_finding(True), RECIPE)[0] == "identical"


def test_probe_and_conversion_verdicts():
    assert raw_verdict({"kind": "probe", "status": "ok", "probe": {"passed": True, "detail": "ok"}}, RECIPE)[0] == "identical"
    verdict, summary = raw_verdict({"kind": "probe", "status": "ok", "probe": {"passed": False, "error": "ValueError:\n must match"}},
                                   RECIPE)
    assert verdict == "incompatible" and summary == "probe fails: ValueError: must match"
    exact = {"exact": True, "mismatched": [], "missing": [], "unexpected": [], "max_abs": 0.0}
    found = {"kind": "converter", "status": "ok", "keys": CLEAN_KEYS, "conversion": {"self_check": exact, "differing_outputs": [],
                                                                "same_input": True}}
    assert raw_verdict(found, RECIPE)[0] == "identical"
    found["conversion"]["differing_outputs"] = ["proj_out.weight"]
    assert raw_verdict(found, RECIPE)[0] == "diverged"
    found["conversion"]["self_check"] = dict(exact, exact=False, mismatched=["norm_out.linear.weight"], max_abs=2.0)
    verdict, summary = raw_verdict(found, RECIPE)
    assert verdict == "diverged" and "norm_out.linear.weight" in summary and "max abs 2" in summary


def file_finding(**changes):
    found = {"kind": "file", "status": "ok", "keys": CLEAN_KEYS, "tensors_changed_on_load": [],
             "file": {"tensors": 2, "metadata_written": {"a": "b"}, "metadata_read": {"a": "b"}}}
    return dict(found, **changes)


def test_a_file_read_back_is_identical_only_when_everything_came_back():
    assert raw_verdict(file_finding(), RECIPE)[0] == "identical"
    refused = raw_verdict(file_finding(load_error="SafetensorError: InvalidHeaderDeserialization\n..."), RECIPE)
    assert refused == ("incompatible", "the reader refuses the file: SafetensorError: InvalidHeaderDeserialization")
    for wrong in (file_finding(tensors_changed_on_load=["w"]), file_finding(keys=dict(CLEAN_KEYS, missing=["w"])),
                  file_finding(file={"tensors": 2, "metadata_written": {"a": "b"}, "metadata_read": {}})):
        verdict, summary = raw_verdict(wrong, RECIPE)
        assert verdict == "diverged" and summary.startswith("the file reads without complaint, but wrong")
    assert "1 tensor read with other bytes (w)" in raw_verdict(file_finding(tensors_changed_on_load=["w"]), RECIPE)[1]


def transformers_finding(**changes):
    found = {"kind": "transformers", "status": "ok", "keys": CLEAN_KEYS, "tensors_changed_on_load": [],
             "outputs": {"logits": stats(0.0, bitwise=True)},
             "loading_info": {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": [], "restored_keys": [],
                              "missing_buffers": []},
             "loaded_as": {"producer": {"dtype": "float32", "attention": "sdpa"},
                           "consumer": {"dtype": "float32", "attention": "sdpa"}}}
    return dict(found, **changes)


def test_transformers_own_account_of_the_load_decides_first():
    assert raw_verdict(transformers_finding(), RECIPE)[0] == "identical"
    info = transformers_finding()["loading_info"]
    # weights initialised at random: diverged even when the outputs happen to agree
    verdict, summary = raw_verdict(transformers_finding(loading_info=dict(info, missing_keys=["lm_head.weight"])), RECIPE)
    assert verdict == "diverged" and "loads, but 1 weight is initialised at random" in summary
    assert raw_verdict(transformers_finding(loading_info=dict(info, mismatched_keys=["w"])), RECIPE) == \
        ("incompatible", "1 weight does not fit this release's shapes (e.g. w)")
    # a tied weight tied again, a buffer computed by the constructor: the outputs judge them
    for harmless in (dict(info, restored_keys=["lm_head.weight"]), dict(info, missing_buffers=["inv_freq"])):
        assert raw_verdict(transformers_finding(loading_info=harmless), RECIPE)[0] == "identical"


def test_another_attention_implementation_that_moves_the_outputs_is_not_equivalent():
    moved = {"producer": {"dtype": "float32", "attention": "eager"},
             "consumer": {"dtype": "float32", "attention": "sdpa"}}
    verdict, summary = raw_verdict(transformers_finding(loaded_as=moved, outputs={"logits": stats(1e-7)}), RECIPE)
    assert verdict == "diverged" and "attention eager -> sdpa" in summary
    same_bits = raw_verdict(transformers_finding(loaded_as=moved), RECIPE)
    assert same_bits[0] == "identical" and "loaded differently, outputs bitwise equal" in same_bits[1]
    dtype = {"producer": {"dtype": "float32", "attention": "sdpa"}, "consumer": {"dtype": "bfloat16", "attention": "sdpa"}}
    assert raw_verdict(transformers_finding(loaded_as=dtype, outputs={"logits": stats(1e-6)}), RECIPE)[0] == "diverged"


# -- the conversion search decides a cell the plain load left red --------------------------------------------------
REFUSED = dict(finding(), keys=dict(CLEAN_KEYS, missing=["b.gamma"], unexpected=["b.weight", "b.bias"]),
               load_error="RuntimeError: Missing key(s) in state_dict")
SEARCHED_RULE = {"rename": {"b.weight": "b.gamma"}, "steps": [{"op": "drop", "key": "b.bias", "shape": [4]}]}


def test_a_searched_conversion_whose_outputs_agree_is_converted_and_its_finding_is_shown():
    searched = dict(finding(out=stats(0.0, bitwise=True)), rule={"rename": {"b.weight": "b.gamma"}})
    judged = judge(REFUSED, RECIPE, None, searched)
    assert (judged.verdict, judged.underlying) == ("converted", "converted")
    assert judged.finding["rule"] == {"rename": {"b.weight": "b.gamma"}}
    assert judged.finding["search"]["before"].startswith("1 missing, 2 unexpected")


def test_a_searched_conversion_that_drops_values_and_disagrees_is_lossy_and_says_what_is_lost():
    searched = dict(finding(out=stats(0.5)), rule=SEARCHED_RULE,
                    rule_notes=["lossy: dropped b.bias (norm 2.1), which is not all zeros"])
    judged = judge(REFUSED, RECIPE, None, searched)
    assert judged.verdict == "lossy"
    assert "b.bias (norm 2.1)" in judged.summary and "max abs 0.5" in judged.summary
    assert "drops 1 tensor holding values" in judged.summary  # one tensor, not "1 tensors"


def test_a_lossy_cell_is_red_unless_declared():
    known = KnownBreak(SpecifierSet("<1"), SpecifierSet(">=1"), None, "bias dropped", None, "undocumented", "m:3")
    searched = dict(finding(out=stats(0.5)), rule=SEARCHED_RULE, rule_notes=["lossy: dropped b.bias, which is not "
                                                                             "all zeros"])
    judged = judge(REFUSED, RECIPE, known, searched)
    assert (judged.verdict, judged.underlying) == ("known-break", "lossy")


def test_a_conversion_that_lost_nothing_but_disagrees_settles_nothing():
    """Renames alone that load but move the outputs paired names wrongly (or behaviour moved): not lossy, not
    converted; the cell stays as the plain load left it, with what was tried."""
    searched = dict(finding(out=stats(0.5)), rule={"rename": {"b.weight": "b.gamma"}})
    judged = judge(REFUSED, RECIPE, None, searched)
    assert judged.verdict == "incompatible"
    assert judged.finding["search"]["verdict"] == "diverged" and "max abs 0.5" in judged.finding["search"]["summary"]
    assert judged.summary.startswith("1 missing, 2 unexpected")  # the plain load, then what the search found
    assert "; the best conversion the search found (1 rename) loads, the outputs still differ: " in judged.summary
    assert "max abs 0.5" in judged.summary


def test_a_conversion_that_does_not_load_either_is_said_so():
    searched = dict(REFUSED, rule={"rename": {"b.weight": "b.gamma"}})
    judged = judge(REFUSED, RECIPE, None, searched)
    assert judged.verdict == "incompatible"
    assert "; the conversion the search tried (1 rename) does not load either: 1 missing, 2 unexpected" in \
        judged.summary


def test_a_declared_break_that_a_searched_conversion_heals_is_stale():
    known = KnownBreak(SpecifierSet("<1"), SpecifierSet(">=1"), None, "renamed", None, "undocumented", "m.yaml:3")
    searched = dict(finding(out=stats(0.0, bitwise=True)), rule={"rename": {"b.weight": "b.gamma"}})
    judged = judge(REFUSED, RECIPE, known, searched)
    assert judged.verdict == "converted" and judged.stale_known_break


def test_a_conversion_that_only_adds_tensors_and_still_disagrees_is_not_called_lossy():
    """Adding a zero bias the producer's model did not have loses nothing: outputs that still differ come from
    something else (behaviour), so the cell keeps its plain verdict and says what was tried."""
    searched = dict(finding(out=stats(0.5)), rule={"steps": [{"op": "add", "key": "b.bias", "shape": [4],
                                                              "dtype": "F32", "value": 0.0}]})
    judged = judge(REFUSED, RECIPE, None, searched)
    assert judged.verdict == "incompatible" and judged.finding["search"]["verdict"] == "diverged"


def test_for_unreleased_code_a_found_conversion_is_evidence_not_a_pass():
    searched = dict(finding(out=stats(0.0, bitwise=True)), rule={"rename": {"b.weight": "b.gamma"}})
    judged = judge(REFUSED, RECIPE, None, searched, search_decides=False)
    assert judged.verdict == "incompatible" and "converted with the conversion the search found (1 rename)" in \
        judged.summary
    assert judged.finding["keys"]["missing"] == ["b.gamma"] and judged.finding["search"]["verdict"] == "converted"


def test_of_two_searched_conversions_the_one_that_converts_is_shown_else_the_first():
    first = dict(finding(out=stats(1.0)), rule={"rename": {"a": "b"}})
    second = dict(finding(out=stats(0.0, bitwise=True)), rule={"rename": {"a": "b"}, "steps": [
        {"op": "add_constant", "key": "b", "value": 1.0}]})
    failed_again = dict(finding(out=stats(2.0)), rule=second["rule"])
    assert best_searched([first, second], RECIPE) is second
    assert best_searched([first, failed_again], RECIPE) is first
    assert best_searched([None, second], RECIPE) is second
    assert best_searched([None], RECIPE) is None


def test_of_two_lossy_conversions_the_one_whose_outputs_moved_least_is_shown():
    """Both drop a tensor holding values; the second also set a switch that made the rest exact (peft's OFT scale
    cannot be carried, its rotation can): the second is the best conversion found, whichever came first."""
    notes = ["lossy: dropped s (norm 3), which is not all zeros"]
    first = dict(finding(out=stats(0.9)), rule={"steps": [{"op": "drop", "key": "s"}]}, rule_notes=notes)
    second = dict(finding(out=stats(0.5)), rule=dict(first["rule"], consumer_args={"exact": True}), rule_notes=notes)
    assert best_searched([first, second], RECIPE) is second
    assert best_searched([second, first], RECIPE) is second
    judged = judge(REFUSED, RECIPE, None, best_searched([first, second], RECIPE))
    assert judged.verdict == "lossy" and "max abs 0.5" in judged.summary
