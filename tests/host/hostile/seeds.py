"""Valid inputs of every kind compat reads, made small and deterministic: the starting points of mutation."""

from __future__ import annotations

import json

import numpy as np
import yaml

from compat.host.report import build_report

MATRIX = """\
defaults:
  tolerance: {atol: 1.0e-5, rtol: 1.0e-4}
  timeout: 600
libraries:
  x-transformers:
    import: x_transformers
    versions: [0.28.4, latest, ">=2.30,<2.31", {range: ">=1.0,<2", sample: newest-patch-per-minor}]
    recipes:
      decoder: {}
      glu-qknorm: {tolerance: {atol: 1.0e-4, outputs: {logits: {atol: 1.0e-3}}}}
      rotary: {probe: false}
    pins:
      - {versions: ">=1.12.0,<1.42.12", requirements: [packaging], why: imported but not declared}
    rules:
      - producers: ">=0.29.2,<0.33.0"
        consumers: ">=0.33.0,<1.15.0"
        recipes: [decoder]
        rule: {rename_patterns: [{pattern: '\\.net\\.', replacement: '.ff.'}]}
        why: renamed
    known_breaks:
      - {producers: "<0.33.0", consumers: ">=0.33.0", recipes: [decoder], reason: renamed,
         link: "https://github.com/lucidrains/x-transformers/compare/0.32.3...0.33.0", upstream: undocumented}
"""

RULES = {
    "rename": {"a.net.w": "a.ff.w"},
    "rename_patterns": [{"pattern": r"layers\.(\d+)\.norm", "replacement": r"layers.\1.gamma"}],
    "steps": [{"op": "swap_halves", "key": "b"}, {"op": "transpose", "key": "c"},
              {"op": "add_constant", "key": "d", "value": 1.0}, {"op": "cast", "key": "e", "dtype": "BF16", "from": "F32"},
              {"op": "fuse", "keys": ["f", "g"], "into": "fg", "sizes": [2, 2]},
              {"op": "add", "key": "new", "shape": [2], "dtype": "F32", "value": 0}],
    "consumer_args": {"max_seq_len": 24},
}

CONFIG = {"wrapper": "TransformerWrapper", "num_tokens": 100, "max_seq_len": 32,
          "attn_layers": {"type": "Decoder", "dim": 48, "depth": 2, "heads": 3}}


def tensors() -> dict[str, np.ndarray]:
    """The tensors RULES applies to, of several dtypes."""
    generator = np.random.default_rng(0)
    return {"a.net.w": generator.standard_normal((4, 2)).astype(np.float32),
            "layers.0.norm": generator.standard_normal(4).astype(np.float16),
            "b": generator.standard_normal((4, 3)).astype(np.float32), "c": np.arange(6, dtype=np.int64).reshape(2, 3),
            "d": generator.standard_normal(3).astype(np.float64), "e": generator.standard_normal(5).astype(np.float32),
            "f": np.ones(2, dtype=np.float32), "g": np.zeros(2, dtype=np.float32),
            "mask": np.array([True, False, True]), "bytes": np.arange(8, dtype=np.uint8)}


def safetensors_bytes(values: dict[str, np.ndarray] | None = None, metadata: dict | None = None) -> bytes:
    from safetensors.numpy import save

    return save(values if values is not None else tensors(), metadata=metadata)


def stamp_metadata() -> dict[str, str]:
    return {"compat.library": "x-transformers", "compat.version": "0.28.4", "compat.config": json.dumps(CONFIG)}


def manifest(values: dict[str, np.ndarray]) -> dict:
    return {"format": 1, "library": "x", "version": "1.0", "recipe": "r", "config": {}, "status": "ok",
            "keys": {k: {"shape": list(v.shape), "dtype": "F32", "digest": "0"} for k, v in values.items()}}


def index(files: dict[str, str]) -> dict:
    return {"metadata": {"total_size": 100}, "weight_map": files}


def report() -> dict:
    keys = {"missing": ["a.ff.w"], "unexpected": ["a.net.w"], "shape": [{"key": "b", "producer": [2], "consumer": [3]}],
            "dtype": [], "shapes": {"a.ff.w": [4], "a.net.w": [4]}}
    outputs = {"logits": {"shape_match": True, "bitwise": False, "max_abs": 0.5, "max_rel": 1.0, "cosine": 0.9,
                          "ref_max_abs": 1.0}}
    known = {"reason": "renamed", "link": "https://x", "upstream": "undocumented", "declared_at": "m.yaml:9"}
    cells = []
    for producer in ("1.0", "2.0"):
        for consumer in ("1.0", "2.0"):
            verdict = "identical" if producer == consumer else "incompatible" if producer < consumer else "diverged"
            cells.append({"id": f"lib/r/{producer}->{consumer}", "library": "lib", "recipe": "r", "producer": producer,
                          "consumer": consumer, "verdict": "known-break" if verdict == "incompatible" else verdict,
                          "underlying": verdict, "summary": "why",
                          "evidence": {"status": "ok", "keys": keys, "outputs": outputs, "load_error": "E:\n boom",
                                       "load_warnings": ["w"], "config": {"unknown_fields": ["x"]},
                                       "rule": RULES, "rule_notes": ["lost"]},
                          "known_break": known if verdict == "incompatible" else None, "stale_known_break": False})
    built = build_report(cells, {"lib": {"1.0": {"key": "k", "lock": {}}}}, "m.yaml", "2.13.0", {"seconds": 1}, "d")
    built["changes"] = {"baseline": {"created": "t", "compat": "0"}, "changed": [
        {"id": "lib/r/1.0->2.0", "before": "identical", "after": "known-break", "kind": "new-red", "summary": "s"}],
        "new_releases": ["lib==2.0"], "new_cells": ["lib/r/1.0->2.0"], "removed_cells": []}
    return built


def yaml_text(data) -> str:
    return yaml.safe_dump(data, sort_keys=False)
