"""A user's own checkpoint: where it comes from, what loading it needs, and the one-recipe matrix that checks it.

What is not given (library, constructor arguments, the release it was saved with) is read from the checkpoint's
compat metadata (``compat.shared.stamp``). The recipe is the fixtures module's ``recipe_from_config``, named by a
digest of the checkpoint and its arguments, so its artifacts are cached apart from every other.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from compat.host.matrix import DEFAULT_TOLERANCE, LibrarySpec, Matrix, RecipeSpec, Tolerance
from compat.host.plan import library_named
from compat.host.user_adapter import (
    CONFIG_FILE,
    PICKLED_WEIGHTS,
    WEIGHTS_FILE,
    adapter_recipe_config,
    is_adapter_folder,
)
from compat.host.user_model import is_model_folder, model_files, model_recipe_config
from compat.shared.checkpoint import PICKLE_SUFFIXES
from compat.shared.errors import CompatError
from compat.shared.stamp import read_stamp


@dataclass
class UserCheckpoint:
    """A user's own checkpoint and what loading it needs: the library, the constructor arguments, the release it
    was saved with (a selector naming one release). ``path`` is a safetensors file (a pickle is converted first), a
    peft adapter's folder (``config``: its base layers, ``compat.host.user_adapter``) or a diffusers model's folder
    (``config``: its class and config.json, ``compat.host.user_model``); ``form`` says which."""

    path: Path
    library: str
    config: dict
    saved_with: str
    form: str = "state-dict"  # or "adapter" (a peft adapter folder), "pretrained" (a diffusers model folder)

    def files(self) -> list[Path]:
        """The files that are the checkpoint (an adapter is its config and its tensors)."""
        if self.form == "pretrained":
            return model_files(self.path)
        return [self.path / CONFIG_FILE, self.path / WEIGHTS_FILE] if self.form == "adapter" else [self.path]


def read_constructor_arguments(path: Path) -> dict:
    """A user's constructor arguments from a JSON or YAML file (within compat's limits for untrusted YAML)."""
    import yaml

    from compat.host.yamlsource import load_data

    try:
        config = load_data(Path(path), "constructor arguments")
    except yaml.YAMLError as exc:
        raise CompatError(f"{path}: cannot read the constructor arguments: {exc}") from None
    if not isinstance(config, dict) or not all(isinstance(key, str) for key in config):
        raise CompatError(f"{path}: expected a mapping of constructor arguments (names to values)")
    return config


def user_checkpoint(checkpoint: Path, library_name: str | None = None, config: dict | None = None,
                    saved_with: str | None = None, allow_pickle: bool = False) -> UserCheckpoint:
    """What is not given is read from the checkpoint's compat metadata (``compat.shared.stamp.save_stamped``). A pickle
    (``torch.save``) is read only with ``allow_pickle``, and then with ``torch.load(weights_only=True)``."""
    checkpoint = Path(checkpoint)
    if is_adapter_folder(checkpoint):
        return _user_adapter(checkpoint, library_name, config, saved_with, allow_pickle)
    if is_model_folder(checkpoint):
        recipe_config, written_by = model_recipe_config(checkpoint)
        saved_with = saved_with or written_by
        if not saved_with:
            raise CompatError(f"{checkpoint}: give --saved-with (its config.json does not record _diffusers_version)")
        return UserCheckpoint(checkpoint.resolve(), library_name or "diffusers", recipe_config, saved_with,
                              "pretrained")
    if not checkpoint.is_file():
        raise CompatError(f"{checkpoint}: no such file" + (" (a folder, but neither a peft adapter's "
                                                           "adapter_config.json nor a model's config.json and "
                                                           ".safetensors in it)" if checkpoint.is_dir() else ""))
    stamp: dict = {}
    if checkpoint.suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise CompatError(f"{checkpoint}: a pickle checkpoint; pass --allow-pickle to read it with "
                              "torch.load(weights_only=True)")
        from compat.host.keydiff import pickle_to_safetensors

        path = pickle_to_safetensors(checkpoint)
    else:
        path = checkpoint
        stamp = read_stamp(checkpoint)
    library_name = library_name or stamp.get("library")
    config = config if config is not None else stamp.get("config")
    saved_with = saved_with or stamp.get("version")
    for value, flag in ((library_name, "--library"), (config, "--recipe-config"), (saved_with, "--saved-with")):
        if not value:
            raise CompatError(f"{checkpoint}: give {flag} (the checkpoint's metadata does not record it)")
    if not isinstance(config, dict):
        raise CompatError(f"{checkpoint}: the constructor arguments must be a mapping, got {type(config).__name__}")
    return UserCheckpoint(path.resolve(), library_name, config, saved_with)


def _user_adapter(folder: Path, library_name: str | None, config: dict | None, saved_with: str | None,
                  allow_pickle: bool) -> UserCheckpoint:
    """A peft adapter folder; pickled tensors (``adapter_model.bin``, older releases' default) only with
    ``allow_pickle``, converted into a copy of the folder."""
    if not (folder / WEIGHTS_FILE).is_file():
        if not (folder / PICKLED_WEIGHTS).is_file():
            raise CompatError(f"{folder}: an adapter folder without {WEIGHTS_FILE}")
        if not allow_pickle:
            raise CompatError(f"{folder / PICKLED_WEIGHTS}: a pickle; pass --allow-pickle to read it with "
                              "torch.load(weights_only=True)")
        folder = _with_safetensors(folder)
    stamp = read_stamp(folder / WEIGHTS_FILE)
    library_name = library_name or stamp.get("library") or "peft"
    saved_with = saved_with or stamp.get("version")
    if not saved_with:
        raise CompatError(f"{folder}: give --saved-with (the adapter's metadata does not record it)")
    given = config if config is not None else stamp.get("config")
    return UserCheckpoint(folder.resolve(), library_name, adapter_recipe_config(folder, given), saved_with, "adapter")


def _with_safetensors(folder: Path) -> Path:
    import atexit
    import tempfile

    from compat.host.keydiff import pickle_to_safetensors

    copy = Path(tempfile.mkdtemp(prefix="compat-adapter-"))
    atexit.register(shutil.rmtree, copy, True)
    shutil.copyfile(folder / CONFIG_FILE, copy / CONFIG_FILE)
    shutil.move(str(pickle_to_safetensors(folder / PICKLED_WEIGHTS)), copy / WEIGHTS_FILE)
    return copy


def user_library(matrix: Matrix, checkpoint: UserCheckpoint) -> tuple[LibrarySpec, Matrix, str, dict]:
    """The matrix reduced to the checkpoint's library, with one recipe: the user's model (named by a digest of the
    checkpoint and its constructor arguments, so its artifacts are cached apart from every other)."""
    library = library_named(matrix, checkpoint.library)
    digest = hashlib.sha256(json.dumps(checkpoint.config, sort_keys=True).encode())
    for path in checkpoint.files():
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 24), b""):
                digest.update(block)
    recipe = f"user-{digest.hexdigest()[:12]}"
    library = dataclasses.replace(library, recipes={recipe: RecipeSpec(recipe, Tolerance(**DEFAULT_TOLERANCE))},
                                  known_breaks=())
    user = {"name": recipe, "config": checkpoint.config, "checkpoint": str(checkpoint.path), "kind": checkpoint.form}
    return library, dataclasses.replace(matrix, libraries={library.name: library}), recipe, user


def refuse_unloadable(run, library: str, saved_with: str, recipe: str) -> None:
    """A checkpoint that its own release cannot build or load is a problem of the arguments given (a typo in the
    constructor arguments, the wrong --saved-with), not an incompatibility between releases."""
    path = run.artifact_dir(library, saved_with, recipe) / "manifest.json"
    manifest = json.loads(path.read_text()) if path.is_file() else {"status": "error", "reason": "no artifact"}
    if manifest["status"] == "error":
        return  # the environment failed: the cells say why
    if manifest["status"] != "ok":
        reason = " ".join(str(manifest.get("reason", "")).split("Traceback")[0].split())[:400]
        raise CompatError(f"the checkpoint does not load in {library}=={saved_with}, the release it was saved with "
                          f"({reason}); check the constructor arguments (--recipe-config) and --saved-with")


def write_rule_files(out: Path, producer: str, rules: dict[str, dict]) -> list[Path]:
    """The rule sets that worked, as files ``compat convert --rules`` reads: one file where every release took the
    same rule, else one per release (``rules-0.33.0.yaml``)."""
    import yaml

    distinct = {json.dumps(rule, sort_keys=True) for rule in rules.values()}
    if len(distinct) <= 1:
        targets = {out: (list(rules), next(iter(rules.values()), {}))}
    else:
        targets = {out.with_name(f"{out.stem}-{version}{out.suffix}"): ([version], rule)
                   for version, rule in rules.items()}
    for path, (versions, rule) in targets.items():
        header = (f"# compat check: a checkpoint saved with {producer}, verified to load with this rule in "
                  f"{', '.join(versions) or 'no release (nothing needed a conversion)'}\n")
        path.write_text(header + yaml.safe_dump(rule, sort_keys=False))
    return list(targets)
