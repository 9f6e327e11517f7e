"""Fuzz every surface where compat reads a stranger's file, for as many cases as asked, and print counts per surface.

    python benchmarks/fuzz.py [--cases 100000] [--surface NAME ...] [--seconds 10] [--memory-mb 1024]

Each case is one file from ``tests/hostile/strategies.py`` (mutated valid seeds and inputs built from scratch), run
through the reader and the command a user would run on it (``tests/hostile/surfaces.py``). A case must end in a valid
result or compat's own error: anything else is a crash, a case over ``--seconds`` a hang, a case that raises the
process's peak memory by more than ``--memory-mb`` a memory failure. Prints, per surface: cases, ok, clean errors,
crashes, hangs, over-memory, the slowest case and the peak memory; then the first distinct crashes with their input.
Exits 1 when anything but ok and clean was seen.
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import signal
import sys
import tempfile
import time
import warnings
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(PROJECT), str(PROJECT / "tests")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hostile.strategies import for_surface  # noqa: E402
from hostile.surfaces import SURFACES, Crash, outcome  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402


class Hang(Exception):
    pass


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fuzz(name: str, cases: int, seconds: int, memory_mb: float, folder: Path) -> dict:
    tally = collections.Counter()
    crashes: dict[str, bytes] = {}
    slowest = [0.0]

    def on_alarm(signum, frame):
        raise Hang(f"over {seconds} s")

    signal.signal(signal.SIGALRM, on_alarm)

    @settings(max_examples=cases, deadline=None, database=None, derandomize=False, print_blob=False,
              suppress_health_check=list(HealthCheck))
    @given(for_surface(name))
    def run(data: bytes) -> None:
        before, started = peak_mb(), time.perf_counter()
        signal.alarm(seconds)
        try:
            result = outcome(SURFACES[name], data, folder)
        except Hang:
            result = "hang"
        except Crash as exc:
            result = "crash"
            crashes.setdefault(str(exc).splitlines()[0][:160], data)
        finally:
            signal.alarm(0)
        slowest[0] = max(slowest[0], time.perf_counter() - started)
        if peak_mb() - before > memory_mb:
            result = "over-memory"
        tally[result] += 1

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run()
    return {"tally": tally, "crashes": crashes, "slowest": slowest[0], "peak_mb": peak_mb()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100_000, help="cases in all, split over the surfaces")
    parser.add_argument("--surface", action="append", choices=sorted(SURFACES), help="default: every surface")
    parser.add_argument("--seconds", type=int, default=10, help="a case taking longer is a hang")
    parser.add_argument("--memory-mb", type=float, default=1024, help="a case raising peak memory by more fails")
    parser.add_argument("--save-crashes", type=Path, help="write each distinct crash's whole input here")
    args = parser.parse_args()
    names = args.surface or sorted(SURFACES)
    per_surface = max(1, args.cases // len(names))
    bad = 0
    print(f"{'surface':<14} {'cases':>7} {'ok':>7} {'clean':>7} {'crash':>6} {'hang':>5} {'memory':>7} "
          f"{'slowest s':>9} {'peak MB':>8}")
    all_crashes = {}
    for name in names:
        with tempfile.TemporaryDirectory() as folder:
            found = fuzz(name, per_surface, args.seconds, args.memory_mb, Path(folder))
        tally = found["tally"]
        bad += tally["crash"] + tally["hang"] + tally["over-memory"]
        print(f"{name:<14} {sum(tally.values()):>7} {tally['ok']:>7} {tally['clean']:>7} {tally['crash']:>6} "
              f"{tally['hang']:>5} {tally['over-memory']:>7} {found['slowest']:>9.2f} {found['peak_mb']:>8.0f}",
              flush=True)
        all_crashes.update({f"{name}: {k}": v for k, v in found["crashes"].items()})
    for number, (message, data) in enumerate(all_crashes.items()):
        if number < 40:
            print(f"\ncrash {message}\n  input: {data[:300]!r}")
        if args.save_crashes:
            args.save_crashes.mkdir(parents=True, exist_ok=True)
            (args.save_crashes / f"crash-{number}.bin").write_bytes(data)
            (args.save_crashes / f"crash-{number}.txt").write_text(message)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
