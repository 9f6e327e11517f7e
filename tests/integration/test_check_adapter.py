"""`compat check` / `compat upgrade` on a user's own peft adapter folder: an OFT adapter trained with peft 0.15.2 on
the user's own model (not one of compat's recipes), carried to 0.16.0, whose OFT keeps its rotation in another layout
and has no per-output scale. compat never sees the user's model: it verifies on layers of the adapter's shapes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from compat.api import prepare
from compat.host.user import user_checkpoint
from compat.shared.errors import CompatError
from compat.shared.stamp import read_stamp

PROJECT = Path(__file__).resolve().parent.parent.parent
# The user's model and adapter, in the release's own environment. "train" saves an OFT adapter moved away from its
# initialisation (with ``scale``, its per-output scale oft_s too); "load" prints the user's model's outputs with the
# adapter in a folder loaded by hand.
USER = """
import json, sys, torch, peft


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Module()
        self.encoder.query = torch.nn.Linear(16, 24)
        self.encoder.value = torch.nn.Linear(16, 24)
        self.head = torch.nn.Linear(24, 8)

    def forward(self, x):
        return self.head(torch.tanh(self.encoder.query(x) * self.encoder.value(x)))


mode, folder = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
base = Tiny().eval()
if mode == "train":
    model = peft.get_peft_model(base, peft.OFTConfig(r=4, oft_block_size=0, target_modules=["query", "value"]))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "oft_r" in name or ("oft_s" in name and sys.argv[3] == "scale"):
                parameter.add_(torch.randn_like(parameter) * 0.1)
    model.save_pretrained(folder)
else:
    model = peft.PeftModel.from_pretrained(base, folder).eval()
    with torch.no_grad():
        print(json.dumps(model(torch.randn(4, 16, generator=torch.Generator().manual_seed(7))).flatten().tolist()))
"""


def release_python(version: str, folder: Path, cache_dir: Path) -> Path:
    """The interpreter of a real peft release's environment (built by compat, as for the matrix)."""
    matrix = folder / f"release-{version}.yaml"
    matrix.write_text(f"libraries:\n  peft:\n    import: peft\n"
                      f"    fixtures: {PROJECT / 'compat' / 'fixtures' / 'peft.py'}\n"
                      f"    versions: ['{version}']\n    recipes: [mlp-oft]\n")
    session = prepare(matrix, cache_dir)
    return session.run.builder.build(session.plan.envs[("peft", version)].request).python


def user(version: str, mode: str, folder: Path, cache_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(release_python(version, folder.parent, cache_dir)), "-c", USER, mode, str(folder),
                           *extra], capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1"})


def train(folder: Path, cache_dir: Path, scale: bool) -> Path:
    done = user("0.15.2", "train", folder, cache_dir, "scale" if scale else "rotation")
    assert done.returncode == 0, done.stderr[-2000:]
    return folder


def outputs(version: str, folder: Path, cache_dir: Path) -> list[float]:
    done = user(version, "load", folder, cache_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def compat(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "compat.cli", *map(str, args)], capture_output=True, text=True)


def test_an_oft_adapter_from_0_15_2_is_upgraded_to_0_16_0_and_loads_on_the_users_model(tmp_path, cache_dir):
    """peft 0.16.0 refuses the 0.15.2 adapter as saved; compat finds the conversion (the rotation repacked, oft_s
    dropped where it stayed at one, the exact parametrisation switched on), verifies it on layers of the adapter's
    shapes, writes the folder, and the user's own model loads it by hand in 0.16.0 with the outputs it had."""
    adapter = train(tmp_path / "adapter", cache_dir, scale=False)
    original = outputs("0.15.2", adapter, cache_dir)
    assert user("0.16.0", "load", adapter, cache_dir).returncode != 0  # what the user has without compat

    out = tmp_path / "adapter-0.16.0"
    done = compat("upgrade", adapter, "--saved-with", "0.15.2", "--to", "0.16.0", "-o", out, f"--cache-dir={cache_dir}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0.15.2 -> 0.16.0: converted" in done.stdout, done.stdout
    assert json.loads((out / "adapter_config.json").read_text())["use_cayley_neumann"] is False
    upgraded = outputs("0.16.0", out, cache_dir)
    assert max(abs(a - b) for a, b in zip(original, upgraded)) < 5e-6
    assert original != outputs("0.15.2", train(tmp_path / "other", cache_dir, scale=True), cache_dir)  # not vacuous

    stamp = read_stamp(out / "adapter_model.safetensors")
    assert stamp["library"] == "peft" and stamp["version"] == "0.16.0"
    assert stamp["config"]["layers"] == {"encoder.query": [16, 24], "encoder.value": [16, 24]}
    again = compat("check", out, "--against", "0.16.0", f"--cache-dir={cache_dir}")  # nothing to say: the stamp
    assert again.returncode == 0 and "0.16.0 -> 0.16.0: identical" in again.stdout, again.stdout + again.stderr


def test_an_adapter_whose_scale_was_trained_is_refused_as_lossy_and_nothing_is_written(tmp_path, cache_dir):
    adapter = train(tmp_path / "adapter", cache_dir, scale=True)
    out = tmp_path / "adapter-0.16.0"
    done = compat("upgrade", adapter, "--saved-with", "0.15.2", "--to", "0.16.0", "-o", out, f"--cache-dir={cache_dir}")
    assert done.returncode == 1 and not out.exists(), done.stdout + done.stderr
    assert "compat: not written: no verified conversion to 0.16.0 (--accept-lossy writes the best one found)" \
        in done.stdout
    assert "it drops 2 tensors that hold values: base_model.model.encoder.query.oft_s (norm" in done.stdout


def test_an_adapter_that_does_not_record_a_width_asks_for_it(tmp_path, cache_dir):
    """0.16's OFT keeps no per-output tensor: the layers' output widths must be given, and are then used."""
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "OFT", "r": 4}))
    import torch
    from safetensors.torch import save_file

    save_file({"base_model.model.encoder.query.oft_R.weight": torch.zeros(4, 6)},
              str(folder / "adapter_model.safetensors"))
    with pytest.raises(CompatError, match=r'encoder\.query.*give them in --recipe-config as \{"layers"'):
        user_checkpoint(folder, saved_with="0.16.0")
    given = user_checkpoint(folder, config={"layers": {"encoder.query": [16, 24]}}, saved_with="0.16.0")
    assert given.library == "peft" and given.config == {"peft_type": "OFT", "layers": {"encoder.query": [16, 24]}}
