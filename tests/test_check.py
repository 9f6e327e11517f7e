"""`compat check` on a user's own checkpoint, saved with a real old release and stamped with compat's metadata."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from compat.api import prepare
from compat.errors import CompatError
from compat.stamp import read_stamp

PROJECT = Path(__file__).resolve().parent.parent
TRAIN = """
import sys, torch, x_transformers
from compat.stamp import save_stamped
config = {"wrapper": "TransformerWrapper", "num_tokens": 100, "max_seq_len": 32,
          "attn_layers": {"type": "Decoder", "dim": 48, "depth": 2, "heads": 3}}
torch.manual_seed(0)
layers = dict(config["attn_layers"]); layers.pop("type")
model = x_transformers.TransformerWrapper(num_tokens=100, max_seq_len=32, attn_layers=x_transformers.Decoder(**layers))
with torch.no_grad():
    for parameter in model.parameters():
        parameter.add_(torch.randn_like(parameter) * 0.1)   # "trained"
save_stamped(model.state_dict(), sys.argv[1], library="x-transformers", config=config)
"""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, cache_dir) -> Path:
    """A model 'trained' with x-transformers 0.28.4, in that release's own environment."""
    folder = tmp_path_factory.mktemp("user")
    matrix = folder / "m.yaml"
    matrix.write_text(f"libraries:\n  x-transformers:\n    import: x_transformers\n"
                      f"    fixtures: {PROJECT / 'fixtures' / 'x_transformers.py'}\n"
                      "    versions: ['0.28.4']\n    recipes: [decoder]\n")
    session = prepare(matrix, cache_dir)
    environment = session.run.builder.build(session.plan.envs[("x-transformers", "0.28.4")].request)
    path = folder / "model.safetensors"
    subprocess.run([str(environment.python), "-c", TRAIN, str(path)], check=True, env={"PYTHONPATH": str(PROJECT)})
    return path


def test_the_stamp_records_library_version_and_config(checkpoint):
    stamp = read_stamp(checkpoint)
    assert stamp["library"] == "x-transformers" and stamp["version"] == "0.28.4"
    assert stamp["config"]["attn_layers"]["dim"] == 48


def test_check_needs_no_arguments_beyond_the_targets_and_converts_moved_keys(checkpoint, cache_dir, tmp_path):
    rules = tmp_path / "rules.yaml"
    result = subprocess.run([sys.executable, "-m", "compat.cli", "check", str(checkpoint), "--against", "0.32.3",
                             "0.33.0", f"--cache-dir={cache_dir}", "--out", str(tmp_path / "report"),
                             "--rules-out", str(rules)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "0.28.4 -> 0.28.4: identical" in out and "0.28.4 -> 0.32.3: identical" in out
    # 0.33.0 renamed the feed-forward keys: the inferred renames make the checkpoint load, bit for bit
    assert "0.28.4 -> 0.33.0: converted: loads after a rule (8 renames); outputs bitwise equal" in out
    assert "rule: rename attn_layers.layers.1.1.net.0.0.weight -> attn_layers.layers.1.1.ff.0.0.weight" in out
    written = yaml.safe_load(rules.read_text())
    assert written["from"] == "0.28.4" and len(written["rules"]["0.33.0"]["rename"]) == 8
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [c["verdict"] for c in report["cells"]] == ["identical", "identical", "converted"]


@pytest.mark.parametrize("content, message", [
    (b"", "shorter than the 8-byte header"), (b"\xff" * 16, "header length"),
    ((5).to_bytes(8, "little") + b"{nope", "header is not valid JSON"),
])
def test_a_corrupt_checkpoint_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(CompatError, match=message):
        read_stamp(path)
