"""`compat check` / `compat upgrade` on a user's own diffusers model folder: a CogView4 transformer "trained" and saved
with diffusers 0.34.0 (``save_pretrained``), which loads in 0.35.0 without a word and computes something else (the
final AdaLN lost its SiLU). Everything compat needs is in the folder's config.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from compat.api import prepare
from compat.fixtures.diffusers import COGVIEW4
from compat.shared.stamp import read_stamp

PROJECT = Path(__file__).resolve().parent.parent.parent
TRAIN = """
import json, sys, torch, diffusers
torch.manual_seed(0)
model = diffusers.CogView4Transformer2DModel(**json.loads(sys.argv[2]))
with torch.no_grad():
    for parameter in model.parameters():
        parameter.add_(torch.randn_like(parameter) * 0.1)   # every parameter away from its initialisation
model.save_pretrained(sys.argv[1])
"""


def release_python(version: str, folder: Path, cache_dir: Path) -> Path:
    """The interpreter of a real diffusers release's environment, as the default matrix builds it."""
    matrix = folder / f"release-{version}.yaml"
    matrix.write_text(f"libraries:\n  diffusers:\n    import: diffusers\n"
                      f"    fixtures: {PROJECT / 'compat' / 'fixtures' / 'diffusers.py'}\n"
                      f"    versions: ['{version}']\n    recipes: [cogview4]\n"
                      "    pins: [{versions: '>=0.32.0', requirements: [transformers], why: pipelines}]\n")
    session = prepare(matrix, cache_dir)
    return session.run.builder.build(session.plan.envs[("diffusers", version)].request).python


def compat(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "compat.cli", *map(str, args)], capture_output=True, text=True)


def test_a_model_folder_is_checked_from_its_own_config_and_upgraded_only_where_it_computes_the_same(tmp_path,
                                                                                                     cache_dir):
    folder = tmp_path / "transformer"
    subprocess.run([str(release_python("0.34.0", tmp_path, cache_dir)), "-c", TRAIN, str(folder),
                    json.dumps(COGVIEW4)], check=True, env={"HF_HUB_OFFLINE": "1"})
    assert json.loads((folder / "config.json").read_text())["_diffusers_version"] == "0.34.0"

    checked = compat("check", folder, "--against", "0.33.1", "0.35.0", f"--cache-dir={cache_dir}")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "0.34.0 -> 0.33.1: identical" in checked.stdout, checked.stdout
    assert "0.34.0 -> 0.35.0: diverged: sample: max abs" in checked.stdout, checked.stdout

    refused = tmp_path / "transformer-0.35.0"
    done = compat("upgrade", folder, "--to", "0.35.0", "-o", refused, f"--cache-dir={cache_dir}")
    assert done.returncode == 1 and not refused.exists(), done.stdout + done.stderr
    assert "compat: not written: no verified conversion to 0.35.0" in done.stdout

    carried = tmp_path / "transformer-0.33.1"
    done = compat("upgrade", folder, "--to", "0.33.1", "-o", carried, f"--cache-dir={cache_dir}")
    assert done.returncode == 0 and "0.34.0 -> 0.33.1: identical" in done.stdout, done.stdout + done.stderr
    (weights,) = carried.glob("*.safetensors")
    assert read_stamp(weights)["version"] == "0.33.1"
    again = compat("check", carried, "--saved-with", "0.33.1", "--against", "0.33.1", f"--cache-dir={cache_dir}")
    assert again.returncode == 0 and "0.33.1 -> 0.33.1: identical" in again.stdout, again.stdout + again.stderr
