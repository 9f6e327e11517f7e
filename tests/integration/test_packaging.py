"""compat as a library's test dependency: an installed (non-editable) compat has its default matrix and recipes,
finds a project's matrix from the working directory and keeps its cache out of site-packages."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

from compat.host.environments import find_uv

PROJECT = Path(__file__).resolve().parent.parent.parent

SCRIPT = """
import json, sys
from compat.host.locate import find_cache, find_matrix
from compat.host.matrix_file import load_matrix
matrix = find_matrix()
print(json.dumps({"matrix": str(matrix.path), "why": matrix.why, "cache": str(find_cache(matrix.path).path),
                  "libraries": sorted(load_matrix(matrix.path).libraries), "prefix": sys.prefix}))
"""


def test_an_installed_compat_ships_its_matrix_and_finds_a_projects(tmp_path):
    uv = find_uv()
    subprocess.run([uv, "build", "--wheel", "--quiet", "--out-dir", str(tmp_path / "dist"), str(PROJECT)], check=True)
    wheel = next((tmp_path / "dist").glob("compat-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"compat/matrix.yaml", "compat/fixtures/x_transformers.py", "compat/fixtures/safetensors.py"} <= names
    assert not any(name.startswith(("fixtures/", "tests/")) for name in names)  # no generic top-level packages

    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--quiet", str(venv)], check=True)
    subprocess.run([uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), str(wheel)], check=True)
    home = tmp_path / "home"
    environment = {"PATH": "/usr/bin:/bin", "HOME": str(home)}

    def ask(cwd: Path) -> dict:
        import json

        done = subprocess.run([str(venv / "bin" / "python"), "-c", SCRIPT], cwd=cwd, env=environment,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shipped = ask(elsewhere)
    assert shipped["matrix"].startswith(shipped["prefix"]) and shipped["why"].startswith("the default matrix")
    assert {"x-transformers", "safetensors", "transformers"} <= set(shipped["libraries"])
    assert shipped["cache"] == str(home / ".cache" / "compat")  # not site-packages

    project = tmp_path / "project"
    (project / "tests").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    (project / "tests" / "recipes.py").write_text("RECIPES = {}\n")
    (project / "compat.yaml").write_text("libraries:\n  demo:\n    import: demo\n    fixtures: tests/recipes.py\n"
                                         "    versions: [{path: .}]\n    recipes: [decoder]\n")
    found = ask(project / "tests")
    assert found["matrix"] == str(project / "compat.yaml") and found["cache"] == str(project / ".compat")
