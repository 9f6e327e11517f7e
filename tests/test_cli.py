"""The `compat` command as a user runs it."""

import json
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent


def compat(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "compat.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_run_writes_the_three_reports(tmp_path, cache_dir):
    matrix = tmp_path / "m.yaml"
    matrix.write_text("libraries:\n  x-transformers:\n    import: x_transformers\n"
                      f"    fixtures: {PROJECT / 'fixtures' / 'x_transformers.py'}\n"
                      "    versions: ['0.30.0', '0.33.0']\n    recipes: [decoder]\n")
    result = compat("run", "--matrix", str(matrix), "--out", str(tmp_path / "out"), "--cache-dir", str(cache_dir))
    assert result.returncode == 0, result.stderr
    assert "4 cells: identical 2, incompatible 2" in result.stdout
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    for cell in report["cells"]:
        assert {"library", "recipe", "producer", "consumer", "verdict", "evidence"} <= set(cell)
    assert report["environments"]["x-transformers"]["0.33.0"]["lock"]["x-transformers"] == "0.33.0"
    assert "## x-transformers / decoder" in (tmp_path / "out" / "report.md").read_text()
    assert (tmp_path / "out" / "index.html").stat().st_size > 1000


def test_a_bad_matrix_exits_2_with_one_clear_message(tmp_path):
    matrix = tmp_path / "m.yaml"
    matrix.write_text("libraries:\n  x-transformers:\n    import: x_transformers\n    versions: [0.30.0, 0.0.99]\n"
                      f"    fixtures: {PROJECT / 'fixtures' / 'x_transformers.py'}\n    recipes: [decoder]\n")
    result = compat("run", "--matrix", str(matrix), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert f"{matrix}:4: version 0.0.99 does not exist on the registry" in result.stderr
    assert "Traceback" not in result.stderr


def test_known_breaks_proposes_yaml_from_a_report(tmp_path):
    report = tmp_path / "report.json"
    report.write_text("not json")
    assert compat("known-breaks", str(report)).returncode == 2
