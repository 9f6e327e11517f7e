"""`compat check` on a user's own checkpoint, saved with a real old release and stamped with compat's metadata."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.version import Version

from compat.api import prepare
from compat.shared.errors import CompatError
from compat.shared.stamp import read_stamp

PROJECT = Path(__file__).resolve().parent.parent.parent
TRAIN = """
import json, sys, torch, x_transformers
from compat.shared.stamp import save_stamped
config = json.loads(sys.argv[2])
torch.manual_seed(0)
layers = dict(config["attn_layers"]); layers.pop("type")
model = x_transformers.TransformerWrapper(num_tokens=config["num_tokens"], max_seq_len=config["max_seq_len"],
                                          attn_layers=x_transformers.Decoder(**layers))
with torch.no_grad():
    for parameter in model.parameters():
        parameter.add_(torch.randn_like(parameter) * 0.1)   # "trained": every parameter away from its initialisation
if sys.argv[1].endswith(".pt"):
    torch.save(model.state_dict(), sys.argv[1])   # what users of old releases actually have
else:
    save_stamped(model.state_dict(), sys.argv[1], library="x-transformers", config=config)
"""
CONFIG = {"wrapper": "TransformerWrapper", "num_tokens": 100, "max_seq_len": 32,
          "attn_layers": {"type": "Decoder", "dim": 48, "depth": 2, "heads": 3}}


def release_python(version: str, folder: Path, cache_dir: Path) -> Path:
    """The interpreter of a real x-transformers release's environment (built by compat, as for the matrix)."""
    matrix = folder / f"release-{version}.yaml"
    matrix.write_text(f"libraries:\n  x-transformers:\n    import: x_transformers\n"
                      f"    fixtures: {PROJECT / 'compat' / 'fixtures' / 'x_transformers.py'}\n"
                      f"    versions: ['{version}']\n    recipes: [decoder]\n"
                      f"    pins: [{{versions: '>=1.12.0,<1.42.12', requirements: [packaging], why: undeclared}}]\n")
    session = prepare(matrix, cache_dir)
    return session.run.builder.build(session.plan.envs[("x-transformers", version)].request).python


def train(version: str, path: Path, config: dict, cache_dir: Path) -> Path:
    """A model 'trained' with a real x-transformers release, in that release's own environment."""
    subprocess.run([str(release_python(version, path.parent, cache_dir)), "-c", TRAIN, str(path), json.dumps(config)],
                   check=True, env={"PYTHONPATH": str(PROJECT)})
    return path


def compat(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "compat.cli", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, cache_dir) -> Path:
    return train("0.28.4", tmp_path_factory.mktemp("user") / "model.safetensors", CONFIG, cache_dir)


def test_the_stamp_records_library_version_and_config(checkpoint):
    stamp = read_stamp(checkpoint)
    assert stamp["library"] == "x-transformers" and stamp["version"] == "0.28.4"
    assert stamp["config"]["attn_layers"]["dim"] == 48


def test_check_needs_no_arguments_beyond_the_targets_and_converts_moved_keys(checkpoint, cache_dir, tmp_path):
    rules = tmp_path / "rules.yaml"
    result = compat("check", checkpoint, "--against", ">=0.32.3,<=0.33.0", f"--cache-dir={cache_dir}",
                    "--out", tmp_path / "report", "--rules-out", rules)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "0.28.4 -> 0.28.4: identical" in out and "0.28.4 -> 0.32.3: identical" in out
    # 0.33.0 renamed the feed-forward keys: the inferred renames make the checkpoint load, bit for bit
    assert "0.28.4 -> 0.33.0: converted: loads after a rule (8 renames); outputs bitwise equal" in out
    assert "rule: rename attn_layers.layers.1.1.net.0.0.weight -> attn_layers.layers.1.1.ff.0.0.weight" in out
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [c["verdict"] for c in report["cells"]] == ["identical", "identical", "converted"]
    # what check writes, convert reads: the renamed file loads in 0.33.0 (the cell above proved it)
    converted = compat("convert", checkpoint, "--rules", rules, "-o", tmp_path / "for-0.33.0.safetensors")
    assert converted.returncode == 0, converted.stderr
    assert len(yaml.safe_load(rules.read_text())["rename"]) == 8


def test_a_torch_save_checkpoint_is_read_only_when_allowed(tmp_path, cache_dir):
    pickled = train("0.30.0", tmp_path / "model.pt", CONFIG, cache_dir)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(CONFIG))
    arguments = ["check", pickled, "--library", "x-transformers", "--recipe-config", config, "--saved-with", "0.30.0",
                 "--against", "latest", f"--cache-dir={cache_dir}"]
    refused = compat(*arguments)
    assert refused.returncode == 2 and "pass --allow-pickle" in refused.stderr
    result = compat(*arguments, "--allow-pickle")
    assert "0.30.0 -> 0.30.0: identical" in result.stdout, result.stdout + result.stderr
    consumers = re.findall(r"^0\.30\.0 -> (\S+): ", result.stdout, re.M)
    assert len(consumers) == 2 and Version(consumers[-1]) > Version("2.3"), "'latest' is the newest release"


def test_a_typo_in_the_constructor_arguments_is_a_config_error_not_an_incompatibility(checkpoint, tmp_path,
                                                                                       cache_dir):
    config = tmp_path / "config.json"
    layers = {("dept" if k == "depth" else k): v for k, v in CONFIG["attn_layers"].items()}  # `depth` misspelt
    config.write_text(json.dumps({**CONFIG, "attn_layers": layers}))
    result = compat("check", checkpoint, "--recipe-config", config, "--against", "0.28.4", f"--cache-dir={cache_dir}")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "does not load in x-transformers==0.28.4, the release it was saved with" in result.stderr
    assert "check the constructor arguments (--recipe-config)" in result.stderr and "incompatible" not in result.stdout


def test_bisect_lists_every_change_of_a_users_own_checkpoint(tmp_path, cache_dir):
    """A qk-norm model saved with 0.29.2: from 0.30.0 on it loads and computes something else (silent), from 0.31.0
    on it is refused."""
    config = {**CONFIG, "attn_layers": {**CONFIG["attn_layers"], "ff_glu": True, "attn_qk_norm": True}}
    path = train("0.29.2", tmp_path / "qk.safetensors", config, cache_dir)
    result = compat("bisect", "--checkpoint", path, "--bad", "0.33.0", f"--cache-dir={cache_dir}")
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.findall(r"^  (\S+) \(uploaded 20\S+\): (\S+) -> (\S+)$", result.stdout, re.M)
    assert found == [("0.30.0", "identical", "diverged"), ("0.31.0", "diverged", "incompatible")], result.stdout
    assert "; 2 changes of verdict:" in result.stdout


@pytest.mark.parametrize("content, message", [
    (b"", "shorter than the 8-byte header"), (b"\xff" * 16, "header length"),
    ((5).to_bytes(8, "little") + b"{nope", "header is not valid JSON"),
])
def test_a_corrupt_checkpoint_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(CompatError, match=message):
        read_stamp(path)


def test_upgrade_writes_only_what_was_verified_in_the_target_release(tmp_path, cache_dir):
    """A pickled state dict from 0.30.0, upgraded to 0.33.0 (feed-forward keys renamed: written with the verified
    renames, and the written file loads in 0.33.0 identically) and to 2.25.5 (no verified conversion: nothing written,
    and the answer says what does not carry over)."""
    pickled = train("0.30.0", tmp_path / "model.pt", CONFIG, cache_dir)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(CONFIG))
    given = ["--library", "x-transformers", "--recipe-config", config, "--saved-with", "0.30.0", "--allow-pickle",
             f"--cache-dir={cache_dir}"]
    out = tmp_path / "model-0.33.0.safetensors"
    done = compat("upgrade", pickled, "--to", "0.33.0", "-o", out, *given)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0.30.0 -> 0.33.0: converted" in done.stdout and "with a conversion of 8 steps" in done.stdout
    stamp = read_stamp(out)
    assert stamp["version"] == "0.33.0" and stamp["config"] == CONFIG and stamp["upgraded_from"].startswith("0.30.0")
    # the written file, checked as saved by 0.33.0: it reads there bit for bit, with no rule
    again = compat("check", out, "--against", "0.33.0", f"--cache-dir={cache_dir}")
    assert "0.33.0 -> 0.33.0: identical" in again.stdout, again.stdout + again.stderr

    refused = tmp_path / "model-2.25.5.safetensors"
    done = compat("upgrade", pickled, "--to", "2.25.5", "-o", refused, *given)
    assert done.returncode == 1 and not refused.exists(), done.stdout + done.stderr
    assert "compat: not written: no verified conversion to 2.25.5" in done.stdout
    assert "it drops 6 tensors that hold values: attn_layers.layers.0.0.0.bias (norm" in done.stdout


LOAD_BY_HAND = """
import json, sys, torch, x_transformers
from safetensors.torch import load_file
config = json.loads(sys.argv[2])
layers = dict(config["attn_layers"]); layers.pop("type")
model = x_transformers.TransformerWrapper(num_tokens=config["num_tokens"], max_seq_len=config["max_seq_len"],
                                          attn_layers=x_transformers.Decoder(**layers)).eval()
path = sys.argv[1]
state = torch.load(path, weights_only=True) if path.endswith(".pt") else load_file(path)
model.load_state_dict(state, strict=True)
tokens = torch.arange(24).reshape(2, 12) % config["num_tokens"]
with torch.no_grad():
    print(json.dumps(model(tokens).flatten().tolist()))
"""


def load_by_hand(version: str, path: Path, config: dict, cache_dir: Path) -> list[float]:
    """The logits a user gets loading ``path`` strictly in a real release, with no compat code in the way."""
    done = subprocess.run([str(release_python(version, path.parent, cache_dir)), "-c", LOAD_BY_HAND, str(path),
                           json.dumps(config)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_a_model_trained_with_0_28_4_upgraded_to_each_layout_era(tmp_path, cache_dir):
    """The issue's story: a 0.28.4 model, every parameter moved from its initialisation (so a dropped LayerNorm bias
    is not zero), saved with ``torch.save``. To 1.15.0 (``net`` -> ``ff``, the final norm re-nested): an exact
    conversion, found and verified by compat, written, and loaded by hand in 1.15.0 with the same logits, bit for bit.
    To 1.31.3 (LayerNorm lost its bias, the logits their bias): no exact conversion exists; refused with what is lost
    and nothing written; written with --accept-lossy, it loads by hand in 1.31.3 and its logits differ."""
    pickled = train("0.28.4", tmp_path / "model.pt", CONFIG, cache_dir)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(CONFIG))
    given = ["--library", "x-transformers", "--recipe-config", config, "--saved-with", "0.28.4", "--allow-pickle",
             f"--cache-dir={cache_dir}"]
    original = load_by_hand("0.28.4", pickled, CONFIG, cache_dir)

    exact = tmp_path / "model-1.15.0.safetensors"
    done = compat("upgrade", pickled, "--to", "1.15.0", "-o", exact, *given)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0.28.4 -> 1.15.0: converted" in done.stdout and "(a conversion the search found)" in done.stdout
    assert "rename norm.weight -> attn_layers.final_norm.weight" in done.stdout
    assert load_by_hand("1.15.0", exact, CONFIG, cache_dir) == original

    lossy = tmp_path / "model-1.31.3.safetensors"
    done = compat("upgrade", pickled, "--to", "1.31.3", "-o", lossy, *given)
    assert done.returncode == 1 and not lossy.exists(), done.stdout + done.stderr
    assert "0.28.4 -> 1.31.3: lossy: no exact conversion found" in done.stdout
    assert "(--accept-lossy writes the best one found)" in done.stdout
    assert re.search(r"it drops 6 tensors that hold values: attn_layers\.layers\.0\.0\.0\.bias \(norm \d", done.stdout)

    done = compat("upgrade", pickled, "--to", "1.31.3", "-o", lossy, "--accept-lossy", *given)
    assert done.returncode == 0 and lossy.exists(), done.stdout + done.stderr
    assert "(--accept-lossy): it loads in 1.31.3, but it is not the model it was" in done.stdout
    moved = load_by_hand("1.31.3", lossy, CONFIG, cache_dir)
    assert len(moved) == len(original) and moved != original

    # which newest release does it reach exactly? 1.27.0 dropped the logits' bias; every release before converts
    matrix = tmp_path / "eras.yaml"
    matrix.write_text(f"libraries:\n  x-transformers:\n    import: x_transformers\n"
                      f"    fixtures: {PROJECT / 'compat' / 'fixtures' / 'x_transformers.py'}\n"
                      f"    versions: ['0.28.4', '1.15.0', '1.26.6', '1.27.0']\n    recipes: [decoder]\n"
                      f"    pins: [{{versions: '>=1.12.0,<1.42.12', requirements: [packaging], why: undeclared}}]\n")
    newest = tmp_path / "model-newest.safetensors"
    done = compat("upgrade", pickled, "--to", "newest-exact", "-o", newest, "--matrix", matrix, *given)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0.28.4 -> 1.27.0: lossy" in done.stdout and "the newest release it reaches exactly: 1.26.6" in done.stdout
    assert read_stamp(newest)["version"] == "1.26.6"


def test_an_upgrade_across_a_changed_default_passes_the_old_value_and_the_stamp_says_so(tmp_path, cache_dir):
    """1.31.2 turned ``norm_add_unit_offset`` on: a 1.31.1 model loaded in 1.31.3 with the same arguments loads and
    computes something else. The upgrade finds the changed default, verifies the model with the old value passed,
    and stamps that argument into the written file's config; loaded by hand with the stamped config, the logits are
    the original's bit for bit, and with the original config they are not."""
    stamped = train("1.31.1", tmp_path / "model.safetensors", CONFIG, cache_dir)
    original = load_by_hand("1.31.1", stamped, CONFIG, cache_dir)
    out = tmp_path / "model-1.31.3.safetensors"
    done = compat("upgrade", stamped, "--to", "1.31.3", "-o", out, f"--cache-dir={cache_dir}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1.31.1 -> 1.31.3: converted" in done.stdout
    assert "set attn_layers.norm_add_unit_offset=False" in done.stdout
    config = read_stamp(out)["config"]
    assert config["attn_layers"]["norm_add_unit_offset"] is False
    assert load_by_hand("1.31.3", out, config, cache_dir) == original
    assert load_by_hand("1.31.3", out, CONFIG, cache_dir) != original, "the default's change is silent without it"


def test_an_upgrade_from_before_an_argument_existed_takes_its_first_value_from_the_releases_between(tmp_path,
                                                                                                     cache_dir):
    """1.27.0 had no ``norm_add_unit_offset``; it came off by default and 1.31.2 turned it on. A 1.27.0 model upgraded
    to 1.31.3: the target's own default is wrong for it, and neither end says what is right. The check then also
    produces in the matrix's releases between (1.31.1 here: the checkpoint does not even load there, its defaults
    are recorded all the same), passes the first value the argument had, and verifies it; loaded by hand in 1.31.3
    with the stamped config, the logits are the original's bit for bit. Offsets alone also reach 1.31.3 (every norm
    scale minus 1), but where the target has a new argument the releases between are asked first: the answer is
    the one the matrix gives, the argument, with the checkpoint's values as saved."""
    stamped = train("1.27.0", tmp_path / "model.safetensors", CONFIG, cache_dir)
    original = load_by_hand("1.27.0", stamped, CONFIG, cache_dir)
    matrix = tmp_path / "between.yaml"
    matrix.write_text(f"libraries:\n  x-transformers:\n    import: x_transformers\n"
                      f"    fixtures: {PROJECT / 'compat' / 'fixtures' / 'x_transformers.py'}\n"
                      f"    versions: ['1.27.0', '1.31.1', '1.31.3']\n    recipes: [decoder]\n"
                      f"    pins: [{{versions: '>=1.12.0,<1.42.12', requirements: [packaging], why: undeclared}}]\n")
    out = tmp_path / "model-1.31.3.safetensors"
    done = compat("upgrade", stamped, "--to", "1.31.3", "-o", out, "--matrix", matrix, f"--cache-dir={cache_dir}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1.27.0 -> 1.31.3: converted" in done.stdout, done.stdout
    assert "set attn_layers.norm_add_unit_offset=False" in done.stdout
    assert "1.27.0 -> 1.31.1" not in done.stdout, "a release between is evidence, not a target"
    assert "add_constant" not in done.stdout
    config = read_stamp(out)["config"]
    assert config["attn_layers"]["norm_add_unit_offset"] is False
    assert load_by_hand("1.31.3", out, config, cache_dir) == original


def test_a_model_saved_where_norms_are_stored_with_an_offset_is_carried_back_with_the_offset(tmp_path, cache_dir):
    """1.31.3 stores each LayerNorm scale as ``w - 1``; 1.27.0 has no such argument. The user's checkpoint does not
    load in 1.27.0 as it is (1.27.0 wants norm biases), the first candidate (zero biases) loads and disagrees, the
    second adds 1 to every scale (from the constants each release's fresh model starts at, recorded even where the
    checkpoint does not load): loaded by hand in 1.27.0, the logits are the original's."""
    stamped = train("1.31.3", tmp_path / "model.safetensors", CONFIG, cache_dir)
    original = load_by_hand("1.31.3", stamped, CONFIG, cache_dir)
    out = tmp_path / "model-1.27.0.safetensors"
    done = compat("upgrade", stamped, "--to", "1.27.0", "-o", out, f"--cache-dir={cache_dir}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1.31.3 -> 1.27.0: converted" in done.stdout, done.stdout
    assert "add_constant" in done.stdout
    assert load_by_hand("1.27.0", out, read_stamp(out)["config"], cache_dir) == original


def test_a_default_inert_where_the_model_was_saved_stays_at_the_targets_own(tmp_path, cache_dir):
    """1.42's softclamp values do nothing behind switches that are off; 1.31.0 clamps whenever a value is set. A 1.42.12
    model goes to 1.31.0 with ``norm_add_unit_offset=True`` alone (one setting, said in the singular), and loaded by
    hand in 1.31.0 with the stamped config its logits are the original's bit for bit."""
    stamped = train("1.42.12", tmp_path / "model.safetensors", CONFIG, cache_dir)
    original = load_by_hand("1.42.12", stamped, CONFIG, cache_dir)
    out = tmp_path / "model-1.31.0.safetensors"
    done = compat("upgrade", stamped, "--to", "1.31.0", "-o", out, f"--cache-dir={cache_dir}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1.42.12 -> 1.31.0: converted" in done.stdout and "with a conversion of 1 step," in done.stdout, done.stdout
    config = read_stamp(out)["config"]
    assert config["attn_layers"]["norm_add_unit_offset"] is True
    assert "softclamp" not in json.dumps(config), config  # left at 1.31.0's own defaults
    assert load_by_hand("1.31.0", out, config, cache_dir) == original
