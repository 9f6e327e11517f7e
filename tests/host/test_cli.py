"""The `compat` command as a user runs it."""

import json
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent.parent


def compat(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "compat.cli", *args], capture_output=True, text=True, cwd=cwd)


def decoder_matrix(versions: list[str]) -> str:
    """A small x-transformers matrix of real releases, decoder recipe only."""
    return ("libraries:\n  x-transformers:\n    import: x_transformers\n"
            f"    fixtures: {PROJECT / 'compat' / 'fixtures' / 'x_transformers.py'}\n"
            f"    versions: {versions!r}\n    recipes: [decoder]\n")


def run_matrix(tmp_path, cache_dir, text: str) -> subprocess.CompletedProcess:
    (tmp_path / "m.yaml").write_text(text)
    return compat("run", "--matrix", str(tmp_path / "m.yaml"), "--out", str(tmp_path / "out"),
                  "--cache-dir", str(cache_dir))


def test_run_writes_the_three_reports(tmp_path, cache_dir):
    """0.33.0 renamed the feed-forward keys: the plain loads are refused, and the search finds and verifies the
    renames both ways (``--no-search`` leaves the refusals, red)."""
    result = run_matrix(tmp_path, cache_dir, decoder_matrix(["0.30.0", "0.33.0"]))
    assert result.returncode == 0, result.stderr
    assert "4 cells: identical 2, converted 2" in result.stdout
    assert (tmp_path / "out" / "conversions.yaml").is_file()
    plain = compat("run", "--matrix", str(tmp_path / "m.yaml"), "--out", str(tmp_path / "plain"), "--cache-dir",
                   str(cache_dir), "--no-search")
    assert plain.returncode == 1 and "4 cells: identical 2, incompatible 2" in plain.stdout, plain.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    for cell in report["cells"]:
        assert {"library", "recipe", "producer", "consumer", "verdict", "evidence"} <= set(cell)
    assert report["environments"]["x-transformers"]["0.33.0"]["lock"]["x-transformers"] == "0.33.0"
    assert "## x-transformers / decoder" in (tmp_path / "out" / "report.md").read_text()
    assert (tmp_path / "out" / "index.html").stat().st_size > 1000


def test_a_bad_matrix_exits_2_with_one_clear_message(tmp_path):
    matrix = tmp_path / "m.yaml"
    matrix.write_text("libraries:\n  x-transformers:\n    import: x_transformers\n    versions: [0.30.0, 0.0.99]\n"
                      f"    fixtures: {PROJECT / 'compat' / 'fixtures' / 'x_transformers.py'}\n    recipes: [decoder]\n")
    result = compat("run", "--matrix", str(matrix), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert f"{matrix}:4: version 0.0.99 does not exist on the registry" in result.stderr
    assert "Traceback" not in result.stderr


def test_known_breaks_refuses_a_file_that_is_not_a_report(tmp_path):
    report = tmp_path / "report.json"
    report.write_text("not json")
    result = compat("known-breaks", str(report))
    assert result.returncode == 2 and f"{report}: the report is not valid JSON" in result.stderr


def test_diff_infer_on_unrelated_checkpoints_warns_and_proposes_nothing(tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    generator = np.random.default_rng(0)
    save_file({f"layer.{i}.weight": generator.standard_normal((4, 4)).astype("float32") for i in range(3)},
              str(tmp_path / "a.safetensors"))
    save_file({f"block.{i}.w": generator.standard_normal((8,)).astype("float32") for i in range(5)},
              str(tmp_path / "b.safetensors"))
    rules = tmp_path / "rules.yaml"
    result = compat("diff", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors"), "--infer",
                    "--rules-out", str(rules))
    assert result.returncode == 1
    assert "no tensor of" in result.stderr and "no rules are proposed" in result.stderr
    assert "inferred rules" not in result.stdout and not rules.exists()


def test_a_release_missing_an_undeclared_dependency_says_which_and_the_pin_that_fixes_it(tmp_path, cache_dir):
    """x-transformers 1.14.0 imports `packaging` without declaring it."""
    result = run_matrix(tmp_path, cache_dir, decoder_matrix(["1.14.0"]))
    assert result.returncode == 1, result.stderr
    hint = ("x-transformers==1.14.0 imports 'packaging', which it does not declare as a dependency: add under "
            'libraries.x-transformers in the matrix `pins: [{versions: "==1.14.0", requirements: [packaging]')
    assert hint in result.stderr  # the console line
    (cell,) = json.loads((tmp_path / "out" / "report.json").read_text())["cells"]
    assert cell["verdict"] == "error" and hint in cell["summary"]


def test_a_bug_in_compat_is_one_line_not_a_traceback(tmp_path):
    """A file name that is not valid UTF-8 reaches Python as unpaired surrogates: nothing may print a traceback."""
    odd = tmp_path / "caf\udce9.safetensors"
    result = subprocess.run([sys.executable, "-m", "compat.cli", "diff", str(odd).encode("utf-8", "surrogateescape"),
                             str(odd).encode("utf-8", "surrogateescape")], capture_output=True)
    assert result.returncode in (2, 3) and b"Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_rerun_with_nothing_changed_keeps_the_report_and_a_changed_matrix_rewrites_it(tmp_path, cache_dir):
    matrix = tmp_path / "m.yaml"
    text = decoder_matrix(["0.28.4", "0.29.0"])  # attention shapes changed: nothing converts
    matrix.write_text(text)
    arguments = ["run", "--matrix", str(matrix), "--out", str(tmp_path / "out"), "--cache-dir", str(cache_dir)]
    first = compat(*arguments)
    assert first.returncode == 1 and "report written to" in first.stdout, first.stderr
    written = (tmp_path / "out" / "report.json").stat().st_mtime_ns
    again = compat(*arguments)
    assert again.returncode == 1 and "nothing changed since the report" in again.stdout
    assert "4 cells: identical 2, incompatible 2" in again.stdout
    assert (tmp_path / "out" / "report.json").stat().st_mtime_ns == written
    matrix.write_text(text + "    known_breaks:\n      - {producers: '0.28.4', consumers: '0.29.0', reason: reshaped}\n"
                             "      - {producers: '0.29.0', consumers: '0.28.4', reason: reshaped}\n")
    declared = compat(*arguments)
    assert declared.returncode == 0 and "report written to" in declared.stdout, declared.stderr
    assert "known-break 2" in declared.stdout
