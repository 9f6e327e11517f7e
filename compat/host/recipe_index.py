"""Which recipes a fixtures module offers, known on the host before any environment is built.

A recipe name in the matrix that the module does not have must be a validation error naming the line, not an
``error`` cell in every release. The host cannot import the library under test, but a fixtures module imports it
lazily (inside its recipes' functions), so the host's own Python imports the module once, in a subprocess (torch is
slow to import and the host process never does), and the answer is cached by the module's content and the
environment-side code it builds on: a rerun with nothing changed reads one small file per library.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from compat import PACKAGE_ROOT, SOURCE_ROOT
from compat.host.store import Store
from compat.shared.errors import CompatError

LIST_RECIPES = """
import json, sys
from compat.envside.recipe import load_recipes
recipes = load_recipes(sys.argv[1])
print(json.dumps({name: bool(getattr(recipe, "probe", False)) for name, recipe in recipes.items()}))
"""


def code_hash(fixtures: Path) -> str:
    """What artifacts and findings depend on besides the environment: the recipes and the environment-side code."""
    digest = hashlib.sha256(fixtures.read_bytes())
    for path in environment_side_code():
        digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def environment_side_code() -> list[Path]:
    """Every module a worker may import: the environment side and the shared zone."""
    return sorted(path for zone in ("envside", "shared") for path in (PACKAGE_ROOT / zone).rglob("*.py"))


def available_recipes(fixtures: Path, cache_dir: Path) -> dict[str, bool]:
    """Recipe name -> whether it is a probe, for the fixtures module at ``fixtures``; ``CompatError`` naming the
    module when it cannot be imported."""
    cache = Store(cache_dir).recipes(fixtures.stem, code_hash(fixtures))
    try:
        return json.loads(cache.read_text())
    except (OSError, ValueError):
        pass
    environment = dict(os.environ, PYTHONPATH=str(SOURCE_ROOT), HF_HUB_OFFLINE="1")
    try:
        listed = subprocess.run([sys.executable, "-c", LIST_RECIPES, str(fixtures)], capture_output=True, text=True,
                                env=environment, timeout=300)
    except subprocess.TimeoutExpired:
        raise CompatError(f"{fixtures}: importing the recipe module took more than 300 s") from None
    if listed.returncode != 0:
        last = (listed.stderr.strip().splitlines() or ["no message"])[-1]
        raise CompatError(f"{fixtures}: the recipe module cannot be imported: {last}")
    recipes = json.loads(listed.stdout.strip().splitlines()[-1])
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(recipes))
    return recipes
