"""The README's commands as a new user runs them: every command it shows is one the CLI accepts, and the commands of
"Living with the matrix" run as written on a small matrix of real releases."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from compat.cli import build_parser

PROJECT = Path(__file__).resolve().parent.parent.parent
README = (PROJECT / "README.md").read_text()


def readme_commands() -> list[str]:
    """`compat ...` lines of the code blocks, and inline `compat ...` spans that are not synopses ([OPTIONS], ...)."""
    commands = []
    for block in re.findall(r"```(?:bash|console)\n(.*?)```", README, re.S):
        for line in block.splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("compat "):
                commands.append(line.split("  #")[0].strip())
    for span in re.findall(r"`(compat [^`]+)`", README):
        words = span.split()
        if len(words) > 2 and not any(mark in span for mark in ("[", "...", "|", "…", "i/n")) \
                and not any(re.fullmatch(r"[A-Z][A-Z_]+(\.\w+)?", word) for word in words):  # synopses, placeholders
            commands.append(" ".join(words))
    return commands


@pytest.mark.parametrize("command", readme_commands())
def test_every_command_the_readme_shows_is_accepted(command):
    try:
        build_parser().parse_args(shlex.split(command)[1:])
    except SystemExit as exc:
        pytest.fail(f"the CLI rejects the README's `{command}` (exit {exc.code})")


def test_the_readme_shows_commands():
    assert len(readme_commands()) >= 10


def compat(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "compat.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_living_with_the_matrix_as_written(tmp_path, cache_dir):
    """A matrix of one's own, outside the project (no `fixtures:`: compat's own recipes), then the README's commands.
    0.29.0 changed the attention's shapes, so nothing converts: the cells stay red."""
    (tmp_path / "matrix.yaml").write_text("libraries:\n  x-transformers:\n    import: x_transformers\n"
                                          "    versions: ['0.28.4', '0.29.0']\n    recipes: [decoder]\n")
    cache = f"--cache-dir={cache_dir}"
    run = compat("run", "--matrix", "matrix.yaml", cache, cwd=tmp_path)
    assert run.returncode == 1 and "4 cells: identical 2, incompatible 2" in run.stdout, run.stderr
    assert "2 cells are red and not declared as known breaks" in run.stdout
    pins = compat("pins", cwd=tmp_path)  # report/report.json by default
    assert pins.returncode == 0 and "| 0.28.4 | 0.28.4 | — | 0.29.0 |" in pins.stdout, pins.stdout + pins.stderr
    constraints = compat("pins", "--producer", "x-transformers==0.28.4", "--recipe", "decoder", "--constraints",
                         "constraints.txt", cwd=tmp_path)
    assert constraints.returncode == 0, constraints.stderr
    assert (tmp_path / "constraints.txt").read_text().strip() == "x-transformers>=0.28.4,<=0.28.4"
    proposed = compat("known-breaks", "report/report.json", "--source", "https://github.com/lucidrains/x-transformers",
                      cwd=tmp_path)
    assert proposed.returncode == 0 and "compare/0.28.4...0.29.0" in proposed.stdout, proposed.stderr
    assert "layout changed (0.28.4 -> 0.29.0): 0 keys missing, 4 unexpected, 2 shapes changed" in proposed.stdout
    merged = compat("merge", "report/report.json", "--out", "merged", cwd=tmp_path)
    assert merged.returncode == 0 and (tmp_path / "merged" / "index.html").is_file(), merged.stderr
    summary = (tmp_path / "report" / "report.md").read_text().split("## Summary")[1]
    assert "| x-transformers | 4 | 2 | 0 | 0 | 0 | 2 | 0 | 0 | 0 |" in summary
