"""Where one release's recipes spend their time: each recipe produced and consumed (its own artifact) inside the
release's environment, as a worker does, timed per recipe; with ``--baseline COMMIT`` the same recipes with that
commit's compat (and its fixtures) in the same run, and the ratio; with ``--profile N`` the N costliest functions of
each recipe that takes over a second.

Usage: python benchmarks/recipe_time.py --library diffusers [--version 0.42.1] [--recipes a,b] [--baseline REV]
       [--profile 25] [--repeat 2]

Environments come from the cache (``COMPAT_CACHE_DIR``) and are built when missing; nothing else should run beside it.
Both sides run with today's worker environment (``worker_process.worker_environment``), so the ratio is the code's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from compat.api import default_cache_dir
from compat.host.environments import EnvironmentBuilder
from compat.host.matrix_file import load_matrix
from compat.host.pipconfig import read_index_settings
from compat.host.plan import make_plan
from compat.host.worker_process import worker_environment

ROOT = Path(__file__).resolve().parents[1]

# Runs inside the release's environment: argv = fixtures, library, version, recipes (comma-separated), profile rows.
CHILD = r"""
import cProfile, io, json, pstats, sys, tempfile, time
from pathlib import Path
fixtures, library, version, names, rows = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
started = time.perf_counter()
import torch
__import__(library.replace("-", "_") if library != "x-transformers" else "x_transformers")
torch.set_num_threads(1)
from compat.envside.engine import consume_artifact, produce_artifact
from compat.envside.recipe import load_recipes
recipes = load_recipes(fixtures)
print(json.dumps({"import": time.perf_counter() - started}), flush=True)
for name in (names.split(",") if names else list(recipes)):
    recipe, folder = recipes[name], Path(tempfile.mkdtemp())
    profile = cProfile.Profile()
    t0 = time.perf_counter(); profile.enable()
    manifest = produce_artifact(recipe, library, version, folder)
    t1 = time.perf_counter()
    finding = consume_artifact(recipe, {"producer": version, "consumer": version, "artifact": str(folder),
                                        "recipe": name})
    profile.disable(); t2 = time.perf_counter()
    text = ""
    if rows and t2 - t0 > 1:
        stream = io.StringIO()
        pstats.Stats(profile, stream=stream).sort_stats("tottime").print_stats(rows)
        text = stream.getvalue()
    print(json.dumps({"recipe": name, "produce": t1 - t0, "consume": t2 - t1, "status": manifest["status"],
                      "finding": finding.get("status"), "profile": text}), flush=True)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--library", required=True)
    parser.add_argument("--version", help="default: the newest release in the matrix")
    parser.add_argument("--recipes", default="", help="comma-separated; default: every recipe of the library")
    parser.add_argument("--matrix", help="default: the matrix found from the working directory, else the shipped one")
    parser.add_argument("--baseline", help="a commit whose compat and fixtures to time in the same run")
    parser.add_argument("--profile", type=int, default=0, help="print the N costliest functions of slow recipes")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each side, alternating; the best is kept")
    args = parser.parse_args()

    cache_dir, index = default_cache_dir(), read_index_settings()
    matrix = load_matrix(args.matrix)
    plan = make_plan(matrix, cache_dir, index)
    version = args.version or plan.versions(args.library)[-1]
    environment = EnvironmentBuilder(cache_dir, index).build(plan.envs[(args.library, version)].request)
    fixtures = Path(matrix.libraries[args.library].fixtures)

    with tempfile.TemporaryDirectory() as scratch:
        sides = {"now": (ROOT, fixtures)}
        if args.baseline:
            tree = Path(scratch) / "baseline"
            _export(args.baseline, tree)
            sides = {f"baseline {args.baseline}": (tree, tree / fixtures.resolve().relative_to(ROOT)), **sides}
        best: dict[str, dict] = {}
        for _ in range(args.repeat):
            for side, (root, module) in sides.items():
                for row in _time(environment.python, root, module, args.library, version, args.recipes,
                                 args.profile):
                    key = (side, row.get("recipe", "import"))
                    if key not in best or _total(row) < _total(best[key]):
                        best[key] = row
    _print(best, list(sides), version, args.library)


def _export(commit: str, tree: Path) -> None:
    """The commit's files (``git archive``), so the baseline imports its own compat and fixtures."""
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], capture_output=True, check=True).stdout
    with tempfile.TemporaryFile() as handle:
        handle.write(archive)
        handle.seek(0)
        with tarfile.open(fileobj=handle) as tar:
            tar.extractall(tree, filter="data")


def _time(python: Path, root: Path, fixtures: Path, library: str, version: str, recipes: str,
          rows: int) -> list[dict]:
    os.sync()  # the other side's file writes are flushed now, not during this side's timed allocations
    environment = dict(worker_environment(), PYTHONPATH=str(root))  # both sides as today's workers run
    finished = subprocess.run([str(python), "-c", CHILD, str(fixtures), library, version, recipes, str(rows)],
                              capture_output=True, text=True, env=environment, cwd=tempfile.gettempdir())
    if finished.returncode:
        sys.exit(f"{root}: the recipes failed in {library} {version}:\n{finished.stderr[-3000:]}")
    return [json.loads(line) for line in finished.stdout.splitlines() if line.startswith("{")]


def _total(row: dict) -> float:
    return row.get("import", 0.0) + row.get("produce", 0.0) + row.get("consume", 0.0)


def _print(best: dict, sides: list[str], version: str, library: str) -> None:
    names = list(dict.fromkeys(name for _, name in best))
    print(f"{library} {version}: seconds per recipe (produce + consume of its own artifact), best of the runs")
    print(f"{'recipe':32}" + "".join(f"{side:>28}" for side in sides) + ("   ratio" if len(sides) == 2 else ""))
    totals = dict.fromkeys(sides, 0.0)
    for name in names:
        cells = []
        for side in sides:
            row = best.get((side, name), {})
            totals[side] += _total(row)
            cells.append(f"{_total(row):>10.2f} s ({row.get('status', '-')})" if row else f"{'-':>28}")
        ratio = ""
        if len(sides) == 2 and all((side, name) in best for side in sides) and _total(best[(sides[0], name)]):
            ratio = f"{_total(best[(sides[1], name)]) / _total(best[(sides[0], name)]):8.2f}"
        print(f"{name:32}" + "".join(f"{cell:>28}" for cell in cells) + ratio)
    line = f"{'total':32}" + "".join(f"{totals[side]:>26.2f} s" for side in sides)
    if len(sides) == 2 and totals[sides[0]]:
        line += f"{totals[sides[1]] / totals[sides[0]]:8.2f}"
    print(line)
    for (side, name), row in best.items():
        if row.get("profile") and side == sides[-1]:
            print(f"\n--- {name} ({side}), costliest functions by own time\n{row['profile'][:4000]}")


if __name__ == "__main__":
    main()
