"""Inference on a real layout change: x-transformers 0.33.0 renamed the feed-forward `net` to `ff`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from compat.api import prepare

PROJECT = Path(__file__).resolve().parent.parent.parent
RESAVE = """
import sys, x_transformers
from safetensors.torch import load_file, save_file
state = {k.replace(".net.", ".ff."): v for k, v in load_file(sys.argv[1]).items()}   # a hand-written conversion
layers = x_transformers.Decoder(dim=32, depth=2, heads=2, attn_dim_head=32)
model = x_transformers.TransformerWrapper(num_tokens=64, max_seq_len=16, attn_layers=layers)
model.load_state_dict(state)
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, sys.argv[2])
"""


def test_inference_rediscovers_the_feed_forward_rename_and_converts_exactly(tmp_path, cache_dir):
    matrix = tmp_path / "m.yaml"
    matrix.write_text(f"libraries:\n  x-transformers:\n    import: x_transformers\n"
                      f"    fixtures: {PROJECT / 'compat' / 'fixtures' / 'x_transformers.py'}\n"
                      "    versions: ['0.30.0', '0.33.0']\n    recipes: [decoder]\n")
    session = prepare(matrix, cache_dir)
    session.run.execute()  # makes the 0.30.0 artifact
    old = session.run.artifact_dir("x-transformers", "0.30.0", "decoder") / "model.safetensors"
    new_env = session.run.builder.build(session.plan.envs[("x-transformers", "0.33.0")].request)
    new = tmp_path / "saved-by-0.33.0.safetensors"
    subprocess.run([str(new_env.python), "-c", RESAVE, str(old), str(new)], check=True)

    cli = [sys.executable, "-m", "compat.cli"]
    rules = tmp_path / "rules.yaml"
    found = subprocess.run([*cli, "diff", str(old), str(new), "--infer", "--rules-out", str(rules)],
                           capture_output=True, text=True)
    assert found.returncode == 1  # the layouts differ
    inferred = yaml.safe_load(rules.read_text())
    assert inferred["rename"] and all(".net." in k and v == k.replace(".net.", ".ff.")
                                      for k, v in inferred["rename"].items())
    assert len(inferred["rename"]) == 8 and "transforms" not in inferred
    verified = subprocess.run([*cli, "convert", str(old), "--rules", str(rules), "-o", str(tmp_path / "out.safetensors"),
                               "--verify", str(new)], capture_output=True, text=True)
    assert verified.returncode == 0 and "bit for bit" in verified.stdout, verified.stdout + verified.stderr
