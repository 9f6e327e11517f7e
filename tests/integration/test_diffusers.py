"""diffusers on a real release: the Flux converter and from_single_file are exact with compat's inverse mapping, the
checks catch an unswapped conversion, and the CogView4 probes report per release what the pipelines do with embeddings
of different lengths (the error message verbatim where they refuse)."""

from __future__ import annotations

from pathlib import Path

from compat.api import prepare
from compat.host.runner import RunOptions

PROJECT = Path(__file__).resolve().parent.parent.parent


def run(tmp_path, cache_dir, versions, recipes):
    fixtures = tmp_path / "variants.py"
    source = (PROJECT / "tests" / "integration" / "diffusers_variants.py").read_text()  # a fresh copy: fresh cells, same recipes
    fixtures.write_text(source.replace("Path(__file__).resolve().parent.parent.parent", f"Path({str(PROJECT)!r})")
                        + f"\n# {tmp_path}\n")
    matrix = tmp_path / "m.yaml"
    matrix.write_text(f"libraries:\n  diffusers:\n    import: diffusers\n    fixtures: {fixtures}\n"
                      f"    versions: {versions}\n    recipes: {recipes}\n"
                      "    pins: [{versions: '>=0.32.0', requirements: [transformers], why: CogView4 pipelines}]\n")
    session = prepare(matrix, cache_dir, options=RunOptions(progress=lambda message: None))
    return {r.cell.id: r for r in session.run.execute()}


def test_flux_conversion_is_exact_and_an_unswapped_conversion_is_caught(tmp_path, cache_dir):
    results = run(tmp_path, cache_dir, "['0.42.1']", "[flux-conversion, flux-conversion-unswapped]")
    right = results["diffusers/flux-conversion/0.42.1->0.42.1"]
    assert right.verdict == "identical", right.summary
    check = right.finding["conversion"]["self_check"]
    assert check["exact"] and check["max_abs"] == 0.0 and not check["mismatched"]

    wrong = results["diffusers/flux-conversion-unswapped/0.42.1->0.42.1"]
    assert wrong.verdict == "diverged", wrong.summary
    check = wrong.finding["conversion"]["self_check"]
    assert sorted(check["mismatched"]) == ["norm_out.linear.bias", "norm_out.linear.weight"] and check["max_abs"] > 0


def test_from_single_file_loads_the_original_layout_exactly_and_an_unswapped_file_is_caught(tmp_path, cache_dir):
    """Offline: a local config folder and local_files_only; the loaded model must hold the state dict bit for bit."""
    results = run(tmp_path, cache_dir, "['0.42.1']",
                  "{flux-single-file: {probe: true}, flux-single-file-unswapped: {probe: true}}")
    right = results["diffusers/flux-single-file/0.42.1->0.42.1"]
    assert right.verdict == "identical", right.summary
    assert "all bit-identical" in right.finding["probe"]["detail"]

    wrong = results["diffusers/flux-single-file-unswapped/0.42.1->0.42.1"]
    assert wrong.verdict == "incompatible", wrong.summary
    error = wrong.finding["probe"]["error"]
    assert "differing ['norm_out.linear.bias', 'norm_out.linear.weight']" in error and "(max abs 0)" not in error


def test_cogview4_probes_report_what_each_pipeline_does(tmp_path, cache_dir):
    results = run(tmp_path, cache_dir, "['0.42.1']", "{cogview4-embeddings: {probe: true}, "
                                                     "cogview4-control-embeddings: {probe: true}}")
    accepted = results["diffusers/cogview4-embeddings/0.42.1->0.42.1"]
    assert accepted.verdict == "identical" and "144 and 48 tokens" in accepted.summary
    refused = results["diffusers/cogview4-control-embeddings/0.42.1->0.42.1"]
    assert refused.verdict == "incompatible"
    assert "`prompt_embeds` and `negative_prompt_embeds` must have the same shape" in refused.finding["probe"]["error"]


def test_a_probe_has_one_cell_per_release(write_matrix, cache_dir):
    matrix = write_matrix(
        f"libraries:\n  diffusers:\n    import: diffusers\n    fixtures: {PROJECT / 'compat' / 'fixtures' / 'diffusers.py'}\n"
        "    versions: ['0.30.0', '0.31.0']\n    recipes: {unet: {}, cogview4-embeddings: {probe: true}}\n")
    cells = [c.id for c in prepare(matrix, cache_dir).plan.cells]
    assert sorted(c for c in cells if "cogview4" in c) == ["diffusers/cogview4-embeddings/0.30.0->0.30.0",
                                                           "diffusers/cogview4-embeddings/0.31.0->0.31.0"]
    assert len([c for c in cells if "/unet/" in c]) == 4


def test_lora_weights_cross_load_between_releases(tmp_path, cache_dir):
    """LoRA saved by 0.24.0 (TextDiffuser-2's pin) loads with load_lora_weights in the newest release, and applies."""
    fixtures = tmp_path / "diffusers_fixtures.py"
    fixtures.write_text((PROJECT / "compat" / "fixtures" / "diffusers.py").read_text() + f"\n# {tmp_path}\n")
    matrix = tmp_path / "m.yaml"
    matrix.write_text(f"libraries:\n  diffusers-peft:\n    package: diffusers\n    import: diffusers\n"
                      f"    fixtures: {fixtures}\n    versions: ['0.24.0', '0.42.1']\n    recipes: [unet-lora]\n"
                      "    pins: [{versions: '>=0.24.0', requirements: [peft, transformers], why: LoRA}]\n")
    session = prepare(matrix, cache_dir, options=RunOptions(progress=lambda message: None))
    results = {r.cell.id: r for r in session.run.execute()}
    forward = results["diffusers-peft/unet-lora/0.24.0->0.42.1"]
    assert forward.verdict == "identical", forward.summary
    assert forward.finding["adapter"]["applied"] and forward.finding["adapter"]["effect"] > 0.1
    assert forward.finding["outputs"]["base"]["bitwise"]
