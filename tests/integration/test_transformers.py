"""transformers across the 4.x -> 5.x boundary, on real releases: the verdicts and the evidence transformers itself
gives (its loading info, the attention implementation in use, keys it renames on load)."""

from __future__ import annotations

from pathlib import Path

from compat.api import prepare

PROJECT = Path(__file__).resolve().parent.parent.parent
MATRIX = f"""libraries:
  transformers:
    import: transformers
    fixtures: {PROJECT / "compat" / "fixtures" / "transformers.py"}
    versions: [4.57.6, 5.24.0]
    recipes: [vit, t5, llama]
"""


def test_transformers_4_to_5(tmp_path, cache_dir):
    (tmp_path / "m.yaml").write_text(MATRIX)
    results = {r.cell.id.removeprefix("transformers/"): r for r in prepare(tmp_path / "m.yaml", cache_dir).run.execute()}

    # ViT: 5.x renames the attention weights on load; transformers converts them, nothing is initialised at random,
    # and the outputs are bitwise equal: equivalent, with the renamed keys as evidence
    vit = results["vit/4.57.6->5.24.0"]
    assert vit.verdict == "equivalent" and "converted the keys on load" in vit.summary
    assert vit.finding["loading_info"]["missing_keys"] == [] and len(vit.finding["keys"]["missing"]) > 0
    assert all(stats["bitwise"] for stats in vit.finding["outputs"].values())

    # T5: 5.x runs attention through SDPA where 4.57.6 ran the eager path; the weights load bit for bit, the outputs
    # move in the last bits, and that is not passed off as equivalent
    t5 = results["t5/4.57.6->5.24.0"]
    assert t5.finding["loaded_as"]["producer"]["attention"] == "eager"
    assert t5.finding["loaded_as"]["consumer"]["attention"] == "sdpa"
    assert t5.finding["tensors_changed_on_load"] == [] and t5.verdict == "diverged"
    assert t5.summary.startswith("loaded differently (attention eager -> sdpa)")

    # Llama with grouped-query attention: the same model in both majors
    for cell in ("llama/4.57.6->5.24.0", "llama/5.24.0->4.57.6"):
        assert results[cell].verdict == "identical", results[cell].summary
