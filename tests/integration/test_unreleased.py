"""A maintainer's CI on real code: the source of a real x-transformers release (its sdist, as `pip download
--no-binary` gives it) as a working tree, a git commit of a local clone, a wheel and an sdist, checked against
stored artifacts of real releases.

The change under test is one a maintainer could make by accident: ``TransformerWrapper.to_logits`` renamed to
``logits_head``. Every checkpoint saved by a release then misses ``logits_head.weight`` and carries an unexpected
``to_logits.weight``; the unmodified source reads them all.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from compat.api import prepare, report_for
from compat.host.environments import find_uv
from compat.host.report.reading import lead_sentence, unreleased_lead
from compat.host.runner import RunOptions

PROJECT = Path(__file__).resolve().parent.parent.parent
RELEASE = "2.25.5"
RELEASES = ["2.25.4", RELEASE]


def rename_to_logits(tree: Path) -> None:
    module = tree / "x_transformers" / "x_transformers.py"
    text = module.read_text()
    assert text.count("self.to_logits") >= 4  # the attribute the decoder recipe's checkpoint holds
    module.write_text(text.replace("self.to_logits", "self.logits_head"))


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sdist")
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                    "--dest", str(folder), f"x-transformers=={RELEASE}"], check=True)
    return next(folder.glob("x_transformers-*.tar.gz"))


@pytest.fixture
def tree(sdist, tmp_path) -> Path:
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path, filter="data")
    return tmp_path / f"x_transformers-{RELEASE}"


def run(matrix: Path, cache_dir: Path, store: Path, unreleased: bool = False):
    session = prepare(matrix, cache_dir, options=RunOptions(progress=lambda message: None), unreleased=unreleased,
                      artifacts=store)
    results = session.run.execute()
    return session, {r.cell.id: r for r in results}


def matrix(folder: Path, versions: str) -> Path:
    path = folder / "compat.yaml"
    path.write_text(f"libraries:\n  x-transformers:\n    import: x_transformers\n"
                    f"    fixtures: {PROJECT / 'compat' / 'fixtures' / 'x_transformers.py'}\n"
                    f"    versions: {versions}\n    recipes: [decoder]\n")
    return path


def assert_the_rename_is_named(result) -> None:
    assert result.verdict == "incompatible", (result.cell.id, result.summary)
    keys = result.finding["keys"]
    assert keys["missing"] == ["logits_head.weight"] and keys["unexpected"] == ["to_logits.weight"]


def test_a_working_tree_against_stored_release_artifacts(tree, tmp_path, cache_dir):
    """The unmodified tree reads every release; renamed, it reads none, and the report leads with it; the second
    run takes the releases' artifacts from the store and builds one environment: the tree's."""
    path = matrix(tmp_path, f"[{', '.join(RELEASES)}, {{path: {tree.name}}}]")
    store = tmp_path / "store"
    session, results = run(path, cache_dir, store)
    label = f"{RELEASE}+worktree"
    assert sorted({r.cell.consumer for r in results.values()}) == [*RELEASES, label]
    for result in results.values():
        assert result.verdict == "identical", (result.cell.id, result.summary)
    assert sorted(p.name for p in (store / "x-transformers").iterdir()) == RELEASES  # releases only, not the tree

    rename_to_logits(tree)
    fresh_cache = tmp_path / "ci-cache"  # what a pull request's CI job has: the store, and nothing else cached
    session, results = run(path, fresh_cache, store, unreleased=True)
    assert sorted(results) == sorted(f"x-transformers/decoder/{p}->{label}" for p in [*RELEASES, label])
    for producer in RELEASES:
        assert_the_rename_is_named(results[f"x-transformers/decoder/{producer}->{label}"])
    assert results[f"x-transformers/decoder/{label}->{label}"].verdict == "identical"
    assert session.run.stats.built == 1 and session.run.stats.spawned == 1  # the tree's environment, no release's
    again, _ = run(path, fresh_cache, store, unreleased=True)
    assert again.run.stats.built == again.run.stats.spawned == 0  # the same source: nothing built or run again
    report = report_for(session, list(results.values()))
    lead = [lead_sentence(e) for e in unreleased_lead(report["cells"], report["environments"])]
    assert lead == [f"unreleased code breaks checkpoints of x-transformers 2.25.4 ... {RELEASE} (2 releases, 2 cells; "
                    f"recipes: decoder) that {RELEASE} reads: x-transformers {label} (path {tree})"]


def test_git_commits_a_wheel_and_an_sdist(tree, sdist, tmp_path, cache_dir):
    """A local clone at two commits (before and after the rename), the renamed tree's wheel and the release's own
    sdist, each a version of its own beside the release."""
    git = ["git", "-C", str(tree), "-c", "user.name=compat", "-c", "user.email=compat@example.org"]
    subprocess.run(["git", "init", "--quiet", "--initial-branch", "main", str(tree)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "--quiet", "-m", "release"], check=True)
    before = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    rename_to_logits(tree)
    subprocess.run([*git, "commit", "--quiet", "-am", "rename to_logits"], check=True)
    after = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    wheels = tmp_path / "wheels"
    subprocess.run([find_uv(), "build", "--wheel", "--quiet", "--out-dir", str(wheels), str(tree)], check=True)
    wheel = next(wheels.glob("*.whl"))
    shutil.copy(sdist, tmp_path / sdist.name)

    path = matrix(tmp_path, f"[{RELEASE}, {{git: {tree.name}, ref: {before}}}, {{git: {tree.name}, ref: main}}, "
                            f"{{wheel: wheels/{wheel.name}}}, {{sdist: {sdist.name}}}]")
    session, results = run(path, cache_dir, tmp_path / "store", unreleased=True)
    labels = {source.kind + ("@" + source.commit[:7] if source.commit else ""): version
              for (_, version), source in session.plan.sources.items()}
    assert labels == {f"git@{before[:7]}": f"{RELEASE}+git.{before[:7]}",
                      f"git@{after[:7]}": f"{RELEASE}+main.{after[:7]}",
                      "wheel": f"{RELEASE}+wheel", "sdist": f"{RELEASE}+sdist"}
    reads = {label: results[f"x-transformers/decoder/{RELEASE}->{label}"] for label in labels.values()}
    assert reads[f"{RELEASE}+git.{before[:7]}"].verdict == "identical"
    assert reads[f"{RELEASE}+sdist"].verdict == "identical"
    assert_the_rename_is_named(reads[f"{RELEASE}+main.{after[:7]}"])
    assert_the_rename_is_named(reads[f"{RELEASE}+wheel"])
    # unreleased versions read each other's checkpoints too; the release is not a consumer under --unreleased
    assert {r.cell.consumer for r in results.values()} == set(labels.values())


def test_the_readmes_maintainer_setup_as_written(tree, tmp_path, cache_dir):
    """The recipe module and compat.yaml of the README's "For library maintainers", pasted into the library's source
    tree, and its pull-request command run there: green as released, red naming the rename."""
    section = (PROJECT / "README.md").read_text().split("## For library maintainers")[1].split("\n## ")[0]
    recipes = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    config = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    command = next(line.split("#")[0].split() for line in re.search(r"```bash\n(.*?)```", section, re.S).group(1)
                   .splitlines() if line.strip().startswith("pytest"))
    (tree / "tests").mkdir(exist_ok=True)
    (tree / "tests" / "compat_recipes.py").write_text(textwrap.dedent(recipes))
    (tree / "compat.yaml").write_text(textwrap.dedent(config))

    def pull_request() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", *command, f"--compat-cache-dir={cache_dir}", "-p",
                               "no:cacheprovider"], cwd=tree, capture_output=True, text=True)

    green = pull_request()
    assert green.returncode == 0 and "3 passed" in green.stdout, green.stdout[-3000:]
    rename_to_logits(tree)
    red = pull_request()
    assert red.returncode == 1 and "1 passed" in red.stdout and "2 failed" in red.stdout, red.stdout[-3000:]
    assert f"FAILED compat.yaml::x-transformers/decoder/2.25.4->{RELEASE}+worktree" in red.stdout
    assert "missing keys: logits_head.weight" in red.stdout and "unexpected keys: to_logits.weight" in red.stdout
    assert (tree / "tests" / "compat-artifacts" / "x-transformers" / RELEASE / "decoder" / "manifest.json").is_file()


def test_a_source_that_does_not_build_is_an_error_in_its_cells_and_the_rest_runs(tmp_path, cache_dir):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "pyproject.toml").write_text("[project\nname = \n")  # not TOML: no wheel comes out of it
    path = matrix(tmp_path, f"[{RELEASE}, {{path: broken}}]")
    session, results = run(path, cache_dir, tmp_path / "store")
    assert results[f"x-transformers/decoder/{RELEASE}->{RELEASE}"].verdict == "identical"
    label = "0+worktree"  # its version is unknown: nothing was built
    for cell_id in (f"{RELEASE}->{label}", f"{label}->{RELEASE}", f"{label}->{label}"):
        result = results[f"x-transformers/decoder/{cell_id}"]
        assert result.verdict == "error" and f"building a wheel from {broken} failed" in result.finding["reason"]
    report = report_for(session, list(results.values()))
    assert lead_sentence(unreleased_lead(report["cells"], report["environments"])[0]).startswith(
        f"x-transformers {label} (path {broken}) could not be built: building a wheel from {broken} failed")


def test_a_damaged_stored_artifact_is_an_error_naming_it_and_the_rest_runs(tree, tmp_path, cache_dir):
    path = matrix(tmp_path, f"[{', '.join(RELEASES)}, {{path: {tree.name}}}]")
    store = tmp_path / "store"
    run(path, cache_dir, store, unreleased=True)  # fills the store
    damaged = store / "x-transformers" / "2.25.4" / "decoder" / "manifest.json"
    damaged.write_text(damaged.read_text().replace('"2.25.4"', '"9.9.9"'))
    _, results = run(path, tmp_path / "ci-cache", store, unreleased=True)
    label = f"{RELEASE}+worktree"
    bad = results[f"x-transformers/decoder/2.25.4->{label}"]
    assert bad.verdict == "error" and str(damaged) in bad.finding["reason"]
    assert "version: expected '2.25.4' (where it is stored), got '9.9.9'" in bad.finding["reason"]
    assert results[f"x-transformers/decoder/{RELEASE}->{label}"].verdict == "identical"
