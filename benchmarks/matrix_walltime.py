"""Wall time of the matrix against its floors, measured in one run.

Prints:
- the time to build any missing environments (not part of the run figures);
- the import floor: the sum over environments of a bare ``python -c "import torch, <library>"`` in each;
- the run part with warm environments and a cold result cache (fresh recipe-code key, so every artifact is produced and
  every cell checked again), for several worker/thread settings: wall time, workers spawned against environments, the
  workers' own imports, and the compute floor (the recipes' produce and consume time measured inside the workers);
  per library, the ratio of the run to imports + compute;
- the cost of the conversion search: the first setting run cold again without it (``--no-search``), and the ratio;
- a no-change rerun of ``compat run`` as a user runs it (wall time, and how many workers it spawned).

Usage: python benchmarks/matrix_walltime.py [--matrix PATH] [--versions N] [--settings 2x1,...] [--no-search-run]
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from compat.api import default_cache_dir
from compat.host.environments import EnvironmentBuilder
from compat.host.matrix_file import load_matrix
from compat.host.pipconfig import read_index_settings
from compat.host.plan import make_plan
from compat.host.runner import Run, RunOptions


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--matrix", help="default: the matrix found from the working directory, else the shipped one")
    parser.add_argument("--versions", type=int, help="use only the first N versions of each library")
    parser.add_argument("--settings", default="2x1,1x1,3x1,2x2", help="jobs x threads to measure, comma-separated")
    parser.add_argument("--no-search-run", action="store_true",
                        help="also run the first setting cold without the conversion search, and print the ratio")
    args = parser.parse_args()
    cache_dir = default_cache_dir()
    index = read_index_settings()
    matrix = load_matrix(args.matrix)
    plan = make_plan(matrix, cache_dir, index)
    if args.versions:
        keep = {key for lib in matrix.libraries for key in [(lib, v) for v in plan.versions(lib)[: args.versions]]}
        plan.envs = {k: v for k, v in plan.envs.items() if k in keep}
        plan.cells = [c for c in plan.cells if (c.library, c.producer) in keep and (c.library, c.consumer) in keep]
    builder = EnvironmentBuilder(cache_dir, index)

    started = time.perf_counter()
    environments = {key: builder.build(env.request) for key, env in plan.envs.items()}
    print(f"environments: {len(environments)}, built or checked in {time.perf_counter() - started:.1f} s")

    floor = 0.0
    for key, environment in environments.items():
        module = matrix.libraries[key[0]].import_name
        t0 = time.perf_counter()
        subprocess.run([str(environment.python), "-c", f"import torch, {module}"], check=True,
                       capture_output=True)
        floor += time.perf_counter() - t0
    print(f"floor (sum of bare imports, one after another): {floor:.1f} s")

    with tempfile.TemporaryDirectory() as scratch:
        walls = {}
        for setting in args.settings.split(","):
            walls[setting] = _measure(plan, builder, cache_dir, Path(scratch) / setting, setting, floor,
                                      len(environments), search=True)
    out = Path(tempfile.mkdtemp())
    command = [sys.executable, "-m", "compat.cli", "run", "--out", str(out)]
    if args.matrix:
        command += ["--matrix", args.matrix]
    subprocess.run(command, capture_output=True)  # make sure the real matrix is complete in the cache
    t0 = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True)
    rerun = time.perf_counter() - t0
    if finished.returncode not in (0, 1):  # 1: red cells, still a complete run
        sys.exit(f"compat run failed: {finished.stderr[-2000:]}")
    reused = "nothing changed since the report" in finished.stdout
    print(f"no-change rerun of `compat run`: {rerun:.2f} s (report {'kept: nothing ran' if reused else 'rewritten'})")

    if args.no_search_run:  # last: the longest, and the figures above stand without it
        with tempfile.TemporaryDirectory() as scratch:
            first = args.settings.split(",")[0]
            plain = _measure(plan, builder, cache_dir, Path(scratch) / f"{first}-plain", first, floor,
                             len(environments), search=False)
        print(f"conversion search: the run with it {walls[first]:.1f} s, without it {plain:.1f} s, "
              f"ratio {walls[first] / plain:.2f}")


def _measure(plan, builder, cache_dir, folder: Path, setting: str, floor: float, environments: int,
             search: bool) -> float:
    """One cold run of the plan (fresh recipe keys) with ``jobs x threads``; prints its figures, returns its wall."""
    jobs, threads = map(int, setting.split("x"))
    run = Run(_fresh_recipes(plan, folder), builder, cache_dir,
              RunOptions(jobs=jobs, threads=threads, search=search, progress=lambda m: None))
    t0 = time.perf_counter()
    results = run.execute()
    wall = time.perf_counter() - t0
    imports = sum(run.stats.import_seconds)
    work = {lib: entry["produce"] + entry["consume"] for lib, entry in run.stats.by_library.items()}
    print(f"run part, cold results, jobs={jobs} threads={threads}, search {'on' if search else 'off'}: {wall:.1f} s "
          f"for {len(results)} cells ({run.stats.searched} checked again under a found conversion); workers spawned "
          f"{run.stats.spawned} for {environments} environments ({run.stats.spawned / environments:.2f}x); their "
          f"imports {imports:.1f} s, compute {sum(work.values()):.1f} s; ratio to the import floor {wall / floor:.2f}, "
          f"to imports + compute {wall / (floor + sum(work.values())):.2f}")
    for library, entry in sorted(run.stats.by_library.items()):
        print(f"  {library}: {entry['workers']} workers, imports {entry['import']:.1f} s, produce "
              f"{entry['produce']:.1f} s, consume {entry['consume']:.1f} s")
    return wall


def _fresh_recipes(plan, folder: Path):
    """The same plan with each recipe module copied under a new name: new cache keys, same recipes."""
    folder.mkdir(parents=True)
    libraries = {}
    for name, library in plan.matrix.libraries.items():
        copy = folder / library.fixtures.name
        copy.write_text(library.fixtures.read_text() + f"\n# benchmark {folder}\n")
        libraries[name] = dataclasses.replace(library, fixtures=copy)
    matrix = dataclasses.replace(plan.matrix, libraries=libraries)
    return dataclasses.replace(plan, matrix=matrix)


if __name__ == "__main__":
    main()
