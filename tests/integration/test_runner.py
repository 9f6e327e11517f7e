"""The whole loop on real x-transformers releases from the registry (no stand-ins).

Three releases around real upstream changes: 0.30.0 -> 0.33.0 renamed the feed-forward keys (``net`` -> ``ff``: a
loud break); 0.28.4 -> 0.30.0 kept every key but changed what qk-norm attention computes (a silent break).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from compat.api import prepare, report_for
from compat.host.report import write_report
from compat.host.runner import Run, RunOptions
from compat.host.search import flat_arguments
from compat.host.scheduling import idle_budget_mb, may_stay_idle
from compat.host.worker_process import WorkerProcess

PROJECT = Path(__file__).resolve().parent.parent.parent
RELEASES = ["0.28.4", "0.30.0", "0.33.0"]


def matrix_text(fixtures: Path, recipes: list[str], versions=RELEASES, extra: str = "") -> str:
    return (f"libraries:\n  x-transformers:\n    import: x_transformers\n    fixtures: {fixtures}\n"
            f"    versions: {list(versions)}\n    recipes: {recipes}\n{extra}")


def fresh_fixtures(tmp_path: Path, source: Path) -> Path:
    """A copy of a recipe module with a unique comment: same recipes, new cache keys, so cells really run."""
    copy = tmp_path / source.name
    copy.write_text(source.read_text() + f"\n# {tmp_path}\n")
    return copy


def run_matrix(path: Path, cache_dir: Path, **options):
    session = prepare(path, cache_dir, options=RunOptions(progress=lambda message: None, **options))
    results = session.run.execute()
    return session, {r.cell.id: r for r in results}


PACKAGING_PIN = "    pins: [{versions: '>=1.12.0', requirements: [packaging], why: imported but undeclared}]\n"


def run_fresh(tmp_path: Path, cache_dir: Path, recipe: str, versions: list[str]):
    """The cells of one recipe between ``versions``, from a fresh copy of the x-transformers recipes (so they run)."""
    fixtures = fresh_fixtures(tmp_path, PROJECT / "compat" / "fixtures" / "x_transformers.py")
    path = tmp_path / "m.yaml"
    path.write_text(matrix_text(fixtures, [recipe], versions, extra=PACKAGING_PIN))
    return run_matrix(path, cache_dir)


@pytest.fixture(scope="module")
def three_releases(tmp_path_factory, cache_dir):
    folder = tmp_path_factory.mktemp("three")
    path = folder / "matrix.yaml"
    path.write_text(matrix_text(PROJECT / "compat" / "fixtures" / "x_transformers.py", ["decoder", "glu-qknorm"]))
    return run_matrix(path, cache_dir)


def test_same_release_pairs_are_identical(three_releases):
    _, results = three_releases
    for recipe in ("decoder", "glu-qknorm"):
        for version in RELEASES:
            cell = results[f"x-transformers/{recipe}/{version}->{version}"]
            assert cell.verdict == "identical", (cell.cell.id, cell.summary)


def test_a_pair_across_the_feed_forward_rename_is_refused_as_saved_and_converted_by_the_search(three_releases):
    """The plain load is refused (its summary is kept as the search's ``before``); the search pairs every ``net`` key
    with its ``ff`` key and the outputs then agree bit for bit."""
    _, results = three_releases
    for pair in ("0.28.4->0.33.0", "0.33.0->0.28.4", "0.30.0->0.33.0"):
        cell = results[f"x-transformers/decoder/{pair}"]
        assert cell.verdict == "converted" and "bitwise equal" in cell.summary, cell.summary
        assert cell.finding["search"]["before"].startswith("8 missing, 8 unexpected; RuntimeError: Error(s) in "
                                                           "loading state_dict")
    renames = results["x-transformers/decoder/0.30.0->0.33.0"].finding["rule"]["rename"]
    assert len(renames) == 8 and all(old.replace(".net.", ".ff.") == new for old, new in renames.items())


def test_the_search_runs_in_each_consumers_own_worker_right_after_its_cells(tmp_path, cache_dir):
    fixtures = fresh_fixtures(tmp_path, PROJECT / "compat" / "fixtures" / "x_transformers.py")
    path = tmp_path / "m.yaml"
    path.write_text(matrix_text(fixtures, ["decoder"], ["0.30.0", "0.33.0"]))
    said: list[str] = []
    session = prepare(path, cache_dir, options=RunOptions(progress=said.append))
    results = session.run.execute()
    assert [r.verdict for r in results].count("converted") == 2
    assert session.run.stats.searched == 2 and session.run.stats.spawned == 2, "no worker was started for the search"
    # counts agree with their nouns: one artifact per release, one conversion per consumer
    assert "compat: 2 environments to run, 4 cells to check, 4 cells in all" in said
    assert [m for m in said if m.startswith("compat: x-transformers==0.30.0: produced")] == \
        ["compat: x-transformers==0.30.0: produced 1 artifact"]
    assert any(m.endswith("==0.33.0: checked 2 cells, a conversion for 1") for m in said), said


def test_without_the_search_the_pair_is_incompatible_with_key_evidence(three_releases):
    session, _ = three_releases
    plain = Run(session.plan, session.run.builder, session.cache_dir, RunOptions(progress=lambda m: None,
                                                                                  search=False))
    results = {r.cell.id: r for r in plain.execute()}
    cell = results["x-transformers/decoder/0.30.0->0.33.0"]
    assert cell.verdict == "incompatible" and "Missing key(s)" in cell.finding["load_error"], cell.summary
    keys = cell.finding["keys"]
    assert all(".ff." in k for k in keys["missing"]) and all(".net." in k for k in keys["unexpected"])
    assert plain.stats.spawned == 0, "the plain findings were the search run's own: nothing ran again"


def test_an_unchanged_layout_is_identical_and_a_changed_computation_diverges(three_releases):
    _, results = three_releases
    assert results["x-transformers/decoder/0.28.4->0.30.0"].verdict == "identical"
    silent = results["x-transformers/glu-qknorm/0.28.4->0.30.0"]
    assert silent.verdict == "diverged", silent.summary
    stats = silent.finding["outputs"]["logits"]
    assert silent.finding["keys"]["missing"] == [] and stats["max_abs"] > 1e-3 and not stats["bitwise"]


def test_a_rerun_with_nothing_changed_spawns_nothing(three_releases, cache_dir):
    session, results = three_releases
    again = prepare(session.matrix.path, cache_dir, options=RunOptions(progress=lambda message: None))
    rerun = {r.cell.id: r.verdict for r in again.run.execute()}
    assert again.run.stats.spawned == 0 and again.run.stats.built == 0
    assert rerun == {cell_id: r.verdict for cell_id, r in results.items()}


def test_environments_record_strategy_and_every_resolved_version(three_releases):
    session, _ = three_releases
    records = session.run.environment_records()["x-transformers"]
    old = records["0.28.4"]
    # 0.28.4's dated dependencies include entmax 1.0, an sdist that no longer builds: the newest fallback is used
    assert old["strategy"] == "newest" and not old["attempts"][0]["ok"] and "entmax" in old["attempts"][0]["error"]
    assert records["0.30.0"]["strategy"] in ("dated", "newest")
    for record in records.values():
        assert record["lock"]["torch"] == session.run.builder.torch_version
        assert "x-transformers" in record["lock"]


def test_the_report_is_written(three_releases, tmp_path):
    session, results = three_releases
    paths = write_report(report_for(session, list(results.values())), tmp_path / "report")
    markdown = paths[1].read_text()
    assert "## x-transformers / glu-qknorm" in markdown and "Missing key(s)" in markdown
    assert "| **0.28.4** | = |" in markdown
    assert "<table>" in paths[2].read_text()


# -- faults stay in their cells ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fault, options, expected", [
    ("crash", {}, "killed by SIGABRT"),
    ("hang", {"timeout": 20}, "no progress for 20 s"),
    ("oom", {"memory_mb": 3000}, "out of memory"),
])
def test_a_faulty_environment_turns_only_its_cells_into_errors(tmp_path, cache_dir, fault, options, expected):
    fixtures = fresh_fixtures(tmp_path, PROJECT / "tests" / "integration" / "fault_recipes.py")
    path = tmp_path / "matrix.yaml"
    path.write_text(matrix_text(fixtures, ["fine", fault], versions=["0.29.2", "0.30.0"]))
    session, results = run_matrix(path, cache_dir, **options)
    bad = results[f"x-transformers/{fault}/0.30.0->0.30.0"]
    assert bad.verdict == "error" and expected in bad.finding["reason"], bad.finding["reason"]
    assert results["x-transformers/fine/0.29.2->0.29.2"].verdict == "identical"
    assert results[f"x-transformers/{fault}/0.29.2->0.29.2"].verdict == "identical"
    assert len(results) == 8  # every cell is reported, good or not


def test_a_probe_listed_as_a_grid_gets_error_cells_that_say_how_to_list_it(tmp_path, cache_dir):
    fixtures = fresh_fixtures(tmp_path, PROJECT / "tests" / "integration" / "fault_recipes.py")
    path = tmp_path / "matrix.yaml"
    path.write_text(matrix_text(fixtures, ["probe"], versions=["0.29.2", "0.30.0"]))
    _, results = run_matrix(path, cache_dir)
    assert results["x-transformers/probe/0.30.0->0.30.0"].summary == "probe passed: ran in 0.30.0"
    across = results["x-transformers/probe/0.29.2->0.30.0"]
    assert across.verdict == "error" and "`probe: {probe: true}`" in across.finding["reason"]

    path.write_text(matrix_text(fixtures, "{probe: {probe: true}}", versions=["0.29.2", "0.30.0"]))
    _, results = run_matrix(path, cache_dir)
    assert sorted(results) == ["x-transformers/probe/0.29.2->0.29.2", "x-transformers/probe/0.30.0->0.30.0"]


def test_a_worker_reports_what_it_holds_after_a_command_and_its_peak(three_releases, tmp_path):
    """What an idle worker holds decides whether it is kept, and the peak how much room busy workers need: a worker
    whose recipe freed 640 MB must not report its peak as what it holds."""
    session, _ = three_releases
    env_plan = next(iter(session.plan.envs.values()))
    library, version = env_plan.library.name, env_plan.version
    environment = session.run.builder.build(env_plan.request)
    worker = WorkerProcess(environment.python, "x_transformers", tmp_path / "worker.log")
    try:
        worker.send({"cmd": "produce", "library": library, "version": version,
                     "fixtures": str(fresh_fixtures(tmp_path, PROJECT / "tests" / "integration" / "fault_recipes.py")),
                     "recipes": {"burst": str(tmp_path / "burst")}}, "producing")
        assert (tmp_path / "burst" / "manifest.json").is_file()
        assert worker.peak_rss_mb - worker.rss_mb > 400, (worker.peak_rss_mb, worker.rss_mb)
    finally:
        worker.close()


def test_idle_workers_leave_room_for_busy_ones_at_the_largest_peak_seen():
    assert idle_budget_mb(available_mb=20_000, jobs=2, peak_mb=500) == 12_000  # 60% of what is available
    assert idle_budget_mb(available_mb=20_000, jobs=2, peak_mb=6_000) == 8_000  # two Flux-sized workers come first
    assert idle_budget_mb(available_mb=8_000, jobs=2, peak_mb=6_000) < 0  # keep no worker idle
    assert idle_budget_mb(available_mb=8_000, jobs=2, peak_mb=6_000, override=3_000) == 3_000


def test_idle_memory_is_not_counted_twice():
    """Measured in a full run: 39 idle x-transformers workers (~280 MB each) on 21 GB; with 10 GB idle, 11 GB were
    free and the next worker was closed (10.3 GB > 60% of 11 GB), to be imported again to consume. What is free is
    measured with the idle workers holding theirs: the budget is on what they could hold."""
    assert may_stay_idle(available_mb=11_000, idle_mb=10_000, rss_mb=300, jobs=2, peak_mb=500)
    assert not (10_000 + 300 <= idle_budget_mb(11_000, 2, 500))  # the rule as it was
    # still never at the expense of busy workers: two Flux-sized peaks must fit in what stays free
    assert not may_stay_idle(available_mb=9_000, idle_mb=2_000, rss_mb=500, jobs=2, peak_mb=5_000)
    assert may_stay_idle(available_mb=11_000, idle_mb=2_000, rss_mb=500, jobs=2, peak_mb=5_000)
    assert not may_stay_idle(available_mb=4_000, idle_mb=8_000, rss_mb=500, jobs=2, peak_mb=500)  # 60% of all


def test_an_environment_that_cannot_build_is_an_error_cell_and_the_rest_runs(tmp_path, cache_dir):
    extra = ("    pins:\n      - versions: '==0.30.0'\n        requirements: ['einops==0.0.0']\n"
             "        why: impossible on purpose\n")
    path = tmp_path / "matrix.yaml"
    path.write_text(matrix_text(PROJECT / "compat" / "fixtures" / "x_transformers.py", ["decoder"],
                                versions=["0.29.2", "0.30.0"], extra=extra))
    _, results = run_matrix(path, cache_dir)
    broken = results["x-transformers/decoder/0.30.0->0.29.2"]
    assert broken.verdict == "error" and "einops==0.0.0" in broken.finding["reason"]
    assert "could not be built" in broken.finding["reason"]
    assert results["x-transformers/decoder/0.29.2->0.29.2"].verdict == "identical"


def test_an_interrupted_run_resumes_without_redoing_finished_environments(tmp_path, cache_dir):
    fixtures = fresh_fixtures(tmp_path, PROJECT / "compat" / "fixtures" / "x_transformers.py")
    path = tmp_path / "matrix.yaml"
    path.write_text(matrix_text(fixtures, ["decoder", "rmsnorm"]))
    environment = dict(os.environ, COMPAT_CACHE_DIR=str(cache_dir))
    process = subprocess.Popen([sys.executable, "-m", "compat.cli", "run", "--matrix", str(path), "--jobs", "1",
                                "--out", str(tmp_path / "report")], stderr=subprocess.PIPE, text=True,
                               env=environment)
    finished = 0
    for line in process.stderr:
        if ": checked " in line:
            finished += 1
            process.send_signal(signal.SIGKILL)
            break
    process.wait()
    assert finished == 1, "the run ended before any environment finished"
    session, results = run_matrix(path, cache_dir)
    assert session.run.stats.spawned == len(RELEASES) - finished  # the finished consumer is not run again
    assert all(r.verdict != "error" for r in results.values())


# -- the verdicts agree with loading by hand --------------------------------------------------------------------------

BY_HAND = """
import sys, torch, x_transformers
from safetensors.torch import load_file
folder, dim_head, extra = sys.argv[1], 32, eval(sys.argv[2])
layers = x_transformers.Decoder(dim=32, depth=2, heads=2, attn_dim_head=32, **extra)
model = x_transformers.TransformerWrapper(num_tokens=64, max_seq_len=16, attn_layers=layers).eval()
try:
    model.load_state_dict(load_file(folder + "/model.safetensors"))
except RuntimeError as error:
    print("REFUSED", str(error).splitlines()[0]); sys.exit()
with torch.no_grad():
    out = model(load_file(folder + "/inputs.safetensors")["tokens"])
print("LOADED", float((out - load_file(folder + "/outputs.safetensors")["logits"]).abs().max()))
"""


@pytest.mark.parametrize("recipe, extra, producer, consumer, expected", [
    ("decoder", {}, "0.30.0", "0.33.0", "REFUSED"),
    ("decoder", {}, "0.28.4", "0.30.0", "LOADED 0.0"),
    ("glu-qknorm", {"ff_glu": True, "attn_qk_norm": True}, "0.28.4", "0.30.0", "LOADED"),
])
def test_loading_by_hand_agrees_with_the_verdict(three_releases, recipe, extra, producer, consumer, expected):
    session, results = three_releases
    folder = session.run.artifact_dir("x-transformers", producer, recipe)
    python = session.run.environments.get(("x-transformers", consumer)) or \
        session.run.builder.cached(session.plan.envs[("x-transformers", consumer)].request)
    shown = subprocess.run([str(python.python), "-c", BY_HAND, str(folder), repr(extra)], capture_output=True,
                           text=True, check=True).stdout.strip()
    assert shown.startswith(expected), shown
    verdict = results[f"x-transformers/{recipe}/{producer}->{consumer}"].verdict
    if shown.startswith("REFUSED"):  # as saved; compat found the renames and verified them
        assert verdict == "converted"
    elif shown == "LOADED 0.0":
        assert verdict == "identical"
    else:
        assert verdict == "diverged" and float(shown.split()[1]) > 1e-3


def test_a_matrix_rule_converts_and_its_constructor_arguments_reach_the_consumer(tmp_path, cache_dir):
    """net -> ff is a rule in matrix.yaml: the cell is `converted`; the same rename with a consumer argument that
    builds a different model (longer positional table) proves the argument is applied on the consuming side."""
    fixtures = fresh_fixtures(tmp_path, PROJECT / "compat" / "fixtures" / "x_transformers.py")
    rename = "{rename_patterns: [{pattern: '\\.net\\.', replacement: '.ff.'}]"
    rules = ("    rules:\n"
             f"      - {{producers: '==0.30.0', consumers: '==0.33.0', recipes: [decoder], why: renamed,\n"
             f"         rule: {rename}}}}}\n"
             f"      - {{producers: '==0.30.0', consumers: '==0.33.0', recipes: [encoder], why: renamed,\n"
             f"         rule: {rename}, consumer_args: {{max_seq_len: 24}}}}}}\n")
    path = tmp_path / "m.yaml"
    path.write_text(matrix_text(fixtures, ["decoder", "encoder"], ["0.30.0", "0.33.0"], rules))
    _, results = run_matrix(path, cache_dir)
    converted = results["x-transformers/decoder/0.30.0->0.33.0"]
    assert converted.verdict == "converted", converted.summary
    assert converted.finding["rule"]["rename_patterns"][0]["replacement"] == ".ff."
    rebuilt = results["x-transformers/encoder/0.30.0->0.33.0"]
    assert rebuilt.verdict == "incompatible" and "size mismatch" in rebuilt.finding["load_error"], rebuilt.summary


def test_ordered_slots_let_the_lowest_priority_in_first():
    import threading
    import time

    from compat.host.runner import OrderedSlots

    slots, entered = OrderedSlots(1), []
    gate = threading.Event()

    def job(priority):
        with slots.slot(priority):
            if priority == (0,):
                gate.wait(5)
            entered.append(priority)

    first = threading.Thread(target=job, args=((0,),))
    first.start()
    time.sleep(0.1)  # (0,) holds the only slot; the others queue in scrambled order
    others = [threading.Thread(target=job, args=(p,)) for p in [(3,), (1,), (2,)]]
    for thread in others:
        thread.start()
    time.sleep(0.2)
    gate.set()
    for thread in [first, *others]:
        thread.join(5)
    assert entered == [(0,), (1,), (2,), (3,)]


def test_a_changed_constructor_default_is_found_and_passed_explicitly(tmp_path, cache_dir):
    """x-transformers 1.31.2 turned ``norm_add_unit_offset`` on by default: a 1.31.1 checkpoint loads in 1.31.3
    without a word and computes something else. The consumer reads both releases' defaults, the search passes the
    producer's value, and the outputs then agree bit for bit; without the search the cell says which default moved.

    Back, passing 1.31.3's ``norm_add_unit_offset=True`` is what the defaults say, but 1.31.1 fails to build with it
    (``TypeError: the first argument must be callable``): left out, 1 is added to every LayerNorm scale instead
    (1.31.3 starts them at 0, 1.31.1 at 1), bit for bit."""
    session, results = run_fresh(tmp_path, cache_dir, "decoder", ["1.31.1", "1.31.3"])
    cell = results["x-transformers/decoder/1.31.1->1.31.3"]
    assert cell.verdict == "converted" and "bitwise equal" in cell.summary, cell.summary
    assert cell.finding["rule"] == {"consumer_args": {"layers": {"norm_add_unit_offset": False}}}
    assert cell.finding["search"]["before"].startswith("logits:"), cell.finding["search"]
    back = results["x-transformers/decoder/1.31.3->1.31.1"]
    assert back.verdict == "converted" and "bitwise equal" in back.summary, back.summary
    steps = back.finding["rule"]["steps"]
    assert "consumer_args" not in back.finding["rule"], back.finding["rule"]
    assert len(steps) == 5 and all(step["op"] == "add_constant" and step["value"] == 1.0 for step in steps), steps
    plain = Run(session.plan, session.run.builder, session.cache_dir, RunOptions(progress=lambda m: None,
                                                                                  search=False))
    unsearched = {r.cell.id: r for r in plain.execute()}["x-transformers/decoder/1.31.1->1.31.3"]
    assert unsearched.verdict == "diverged"
    assert "constructor defaults changed: layers.norm_add_unit_offset false -> true" in unsearched.summary


def test_a_changed_default_inert_in_the_producers_release_is_left_at_the_consumers(tmp_path, cache_dir):
    """x-transformers 1.42's ``attn_logit_softclamp_value=50.`` and ``softclamp_output_value=30.`` do nothing while
    the switches ``attn_softclamp_logits`` and ``softclamp_output`` are off; 1.31 clamps whenever a value is set. The
    first candidate passes all three changed defaults and turns the clamps on (logits 0.16 apart); part of them is
    right: ``norm_add_unit_offset=True`` alone in 1.31.0, and in 1.31.1 (which fails to build with it) none, with 1
    added to every LayerNorm scale. Both bit for bit."""
    _, results = run_fresh(tmp_path, cache_dir, "decoder", ["1.31.0", "1.31.1", "1.42.12"])
    to_1310 = results["x-transformers/decoder/1.42.12->1.31.0"]
    assert to_1310.verdict == "converted" and "bitwise equal" in to_1310.summary, to_1310.summary
    assert flat_arguments(to_1310.finding["rule"]) == {"layers.norm_add_unit_offset": True}, to_1310.finding["rule"]
    to_1311 = results["x-transformers/decoder/1.42.12->1.31.1"]
    assert to_1311.verdict == "converted" and "bitwise equal" in to_1311.summary, to_1311.summary
    assert not flat_arguments(to_1311.finding["rule"]), to_1311.finding["rule"]
    assert {step["op"] for step in to_1311.finding["rule"]["steps"]} == {"add_constant"}, to_1311.finding["rule"]


def test_a_tensor_an_argument_sizes_is_built_at_the_producers_size(tmp_path, cache_dir):
    """x-transformers 1.42.18 stopped raising ``rotary_emb_dim`` to 32 (``max(dim_head // 2, 32)`` became
    ``dim_head // 2``): with heads of 32, a 1.42.17 checkpoint's rotary ``inv_freq`` holds 16 values where 1.42.18
    builds 8, and both signatures say ``None``. The consumer builds its model again with the arguments that could size
    it and finds ``rotary_emb_dim=32``; passed, the outputs agree bit for bit. Back, 1.42.17 raises any smaller value
    to 32: no argument sizes it, and the cell stays refused."""
    fixtures = fresh_fixtures(tmp_path, PROJECT / "compat" / "fixtures" / "x_transformers.py")
    path = tmp_path / "m.yaml"
    path.write_text(matrix_text(fixtures, ["rotary"], ["1.42.17", "1.42.18"]))
    _, results = run_matrix(path, cache_dir)
    forward = results["x-transformers/rotary/1.42.17->1.42.18"]
    assert forward.verdict == "converted" and "bitwise equal" in forward.summary, forward.summary
    assert forward.finding["rule"] == {"consumer_args": {"layers": {"rotary_emb_dim": 32}}}
    back = results["x-transformers/rotary/1.42.18->1.42.17"]
    assert back.verdict == "incompatible" and "inv_freq" in back.summary, back.summary


def test_rotary_pairs_that_moved_are_a_permutation_of_query_and_key_rows(tmp_path, cache_dir):
    """x-transformers 1.30.1 pairs each head's rotary dimensions as (2i, 2i + 1) where 1.30.0 paired (i, i + n/2):
    same keys, other outputs. The second candidate interleaves the rows of every query and key projection per head
    (deinterleaves them the other way); the attention is then the same up to the order of a sum."""
    _, results = run_fresh(tmp_path, cache_dir, "rotary", ["1.30.0", "1.30.1"])
    for producer, consumer, op in (("1.30.0", "1.30.1", "interleave"), ("1.30.1", "1.30.0", "deinterleave")):
        cell = results[f"x-transformers/rotary/{producer}->{consumer}"]
        assert cell.verdict == "converted" and "within tolerance" in cell.summary, cell.summary
        steps = cell.finding["rule"]["steps"]
        assert len(steps) == 4 and {step["op"] for step in steps} == {op}, steps  # q and k of two layers
        assert cell.finding["search"]["before"].startswith("logits:"), cell.finding["search"]


def test_a_new_switch_about_a_feature_the_model_uses_is_tried_against_its_default(tmp_path, cache_dir):
    """x-transformers 1.20.0 stopped rotating the values with the rotary embedding and added ``rotary_embed_values``,
    off: a 1.19.1 rotary model loads in 1.20.0 and computes something else. The switch shares a word with the
    config's ``rotary_pos_emb: true``; on, the outputs agree bit for bit."""
    _, results = run_fresh(tmp_path, cache_dir, "rotary", ["1.19.1", "1.20.0"])
    cell = results["x-transformers/rotary/1.19.1->1.20.0"]
    assert cell.verdict == "converted" and "bitwise equal" in cell.summary, cell.summary
    assert cell.finding["rule"]["consumer_args"] == {"layers": {"attn_rotary_embed_values": True}}, cell.finding["rule"]


def test_a_resumed_run_waits_for_the_releases_between_before_it_decides_a_cells_conversion(tmp_path, cache_dir):
    """1.27.0 had no ``norm_add_unit_offset``; 1.31.1 has it off, 1.31.3 on: the search reads 1.31.1's artifact to
    pass ``False``. A run interrupted after the cell was checked but before 1.31.1 produced (its artifact is gone
    here) resumes with the cell's finding in the cache: the conversion must wait for 1.31.1's evidence, not be
    decided (and remembered) without it."""
    fixtures = fresh_fixtures(tmp_path, PROJECT / "compat" / "fixtures" / "x_transformers.py")
    path = tmp_path / "m.yaml"
    path.write_text(matrix_text(fixtures, ["decoder"], ["1.27.0", "1.31.1", "1.31.3"], extra=(
        "    pins: [{versions: '>=1.12.0', requirements: [packaging], why: imported but undeclared}]\n")))
    cell_id = "x-transformers/decoder/1.27.0->1.31.3"
    session, results = run_matrix(path, cache_dir)
    assert results[cell_id].verdict == "converted", results[cell_id].summary
    rule = results[cell_id].finding["rule"]
    assert rule["consumer_args"] == {"layers": {"norm_add_unit_offset": False}}, rule
    shutil.rmtree(session.run.artifact_dir("x-transformers", "1.31.1", "decoder"))
    resumed, results = run_matrix(path, cache_dir)
    assert resumed.run.stats.produced == 1
    assert results[cell_id].verdict == "converted", results[cell_id].summary
    assert results[cell_id].finding["rule"] == rule


def test_a_norm_stored_with_an_offset_converts_back_to_a_release_without_the_argument(tmp_path, cache_dir):
    """1.31.2 stores LayerNorm's scale as ``w - 1`` (``norm_add_unit_offset``, on by default); 1.27.0 has no such
    argument. Each release records the constants its fresh model starts at (gamma 0 against 1), the first candidate
    (add the zero betas) loads and disagrees, and the second adds 1 to every gamma: bit for bit. The other way, with
    no release between to say the argument's first value, the same holds with -1 (where one is listed, passing
    ``norm_add_unit_offset=False`` converts first: ``test_a_resumed_run_...``)."""
    fixtures = fresh_fixtures(tmp_path, PROJECT / "compat" / "fixtures" / "x_transformers.py")
    path = tmp_path / "m.yaml"
    path.write_text(matrix_text(fixtures, ["decoder"], ["1.27.0", "1.31.3"], extra=(
        "    pins: [{versions: '>=1.12.0', requirements: [packaging], why: imported but undeclared}]\n")))
    session, results = run_matrix(path, cache_dir)
    for pair, offset in (("1.31.3->1.27.0", 1.0), ("1.27.0->1.31.3", -1.0)):
        cell = results[f"x-transformers/decoder/{pair}"]
        assert cell.verdict == "converted" and "bitwise equal" in cell.summary, cell.summary
        offsets = [step for step in cell.finding["rule"]["steps"] if step["op"] == "add_constant"]
        assert {step["key"].rsplit(".", 1)[-1] for step in offsets} == {"gamma"} and len(offsets) == 5
        assert all(step["value"] == offset for step in offsets)
        assert "consumer_args" not in cell.finding["rule"]
    assert session.run.stats.searched == 4, "two first candidates, then two second ones"
