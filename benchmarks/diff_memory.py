"""Memory and speed of `compat diff` on large checkpoints, against a naive whole-file comparison and raw reading.

Builds two random checkpoints of --gb each on disk (B = A with a few tensors renamed, one transposed, one changed),
then measures, in separate processes, in one run:
- `compat diff A B`: wall time and peak memory (max RSS);
- naive: `safetensors.torch.load_file` of both files, then `torch.equal` per common key;
- reading both files (`cat A B > /dev/null`): the speed floor;
and the inference time of `compat diff --infer` on a checkpoint of 2,000 tensors, minus the time to read it.
Targets: peak memory below the largest tensor + 256 MB; diff at >= 70% of the read speed; inference < 1 s beyond reading.
Files are read from the page cache in every measurement alike (they were just written).

Usage: python benchmarks/diff_memory.py [--gb 2] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from compat.host.keydiff import open_checkpoint
from compat.shared.checkpoint import write
from compat.shared.rules import RuleSet

TENSOR_MB = 64


def make_pair(folder: Path, gb: float) -> tuple[Path, Path, int]:
    count = max(2, int(gb * 1024 / TENSOR_MB))
    shape = (TENSOR_MB * 1024 * 1024 // 4 // 1024, 1024)
    rng = np.random.default_rng(0)
    layout = [(f"layers.{i}.weight", "F32", shape) for i in range(count)]
    a = folder / "a.safetensors"
    write(a, layout, (rng.standard_normal(shape, dtype=np.float32).tobytes() for _ in layout))
    rules = RuleSet.from_data({"rename": {f"layers.{i}.weight": f"blocks.{i}.weight" for i in range(0, count, 7)},
                               "steps": [{"key": "blocks.0.weight", "op": "transpose"}]})
    source = open_checkpoint(a)
    conversion = rules.apply(source.layout(), source.read)
    new_layout, data = conversion.layout, conversion.tensors()

    def changed():
        for index, chunk in enumerate(data):
            yield chunk if index != 1 else bytes(len(chunk))

    b = folder / "b.safetensors"
    write(b, new_layout, changed())
    return a, b, TENSOR_MB * 1024 * 1024


def timed(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of a command, via GNU time."""
    t0 = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-f", "%M", *command], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if result.returncode not in (0, 1):
        raise RuntimeError(result.stderr[-2000:])
    return wall, int(result.stderr.strip().splitlines()[-1]) / 1024


NAIVE = """
import sys, torch
from safetensors.torch import load_file
a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
print(sum(torch.equal(a[k], b[k]) for k in set(a) & set(b)))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gb", type=float, default=2.0, help="size of each checkpoint")
    parser.add_argument("--dir", default=None, help="where to write the checkpoints (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        folder = Path(scratch)
        t0 = time.perf_counter()
        a, b, largest = make_pair(folder, args.gb)
        size = (a.stat().st_size + b.stat().st_size) / 2**30
        print(f"checkpoints: {size:.2f} GB in all, largest tensor {largest / 2**20:.0f} MB "
              f"(written in {time.perf_counter() - t0:.1f} s)")
        read_s, _ = timed(["sh", "-c", f"cat {a} {b} > /dev/null"])
        diff_s, diff_mb = timed([sys.executable, "-m", "compat.cli", "diff", str(a), str(b)])
        naive_s, naive_mb = timed([sys.executable, "-c", NAIVE, str(a), str(b)])
        print(f"read both files:  {read_s:6.2f} s ({size / read_s:.2f} GB/s)")
        print(f"compat diff:      {diff_s:6.2f} s, peak {diff_mb:7.0f} MB; speed {read_s / diff_s:.0%} of reading; "
              f"peak vs largest tensor + 256 MB: {diff_mb:.0f} / {largest / 2**20 + 256:.0f} MB")
        print(f"naive load+equal: {naive_s:6.2f} s, peak {naive_mb:7.0f} MB "
              f"(compat diff uses {diff_mb / naive_mb:.1%} of its memory)")

        many = folder / "many.safetensors"
        rng = np.random.default_rng(1)
        layout = [(f"model.layers.{i // 10}.block.{i % 10}.weight", "F32", (32, 48)) for i in range(2000)]
        write(many, layout, (rng.standard_normal((32, 48), dtype=np.float32).tobytes() for _ in layout))
        renames = {name: name.replace("block", "mlp") for name, _, _ in layout[::3]}
        swapped = [{"key": renames.get(layout[i][0], layout[i][0]), "op": "swap_halves"} for i in range(1, 2000, 5)]
        rules = RuleSet.from_data({"rename": renames, "steps": swapped})
        source = open_checkpoint(many)
        conversion = rules.apply(source.layout(), source.read)
        moved = folder / "moved.safetensors"
        write(moved, conversion.layout, conversion.tensors())
        code = ("import sys, time\nfrom compat.host.keydiff import open_checkpoint\nfrom compat.host.inference import infer\n"
                "a, b = open_checkpoint(sys.argv[1]), open_checkpoint(sys.argv[2])\n"
                "t = time.perf_counter(); [a.read(n) for n in a.entries]; [b.read(n) for n in b.entries]\n"
                "r = time.perf_counter() - t; t = time.perf_counter(); rules, left = infer(a, b)\n"
                "print(r, time.perf_counter() - t, len(rules.renames), len(rules.steps) - 1, len(left))")
        out = subprocess.run([sys.executable, "-c", code, str(many), str(moved)], capture_output=True, text=True,
                             check=True).stdout.split()
        read_many, infer_s = float(out[0]), float(out[1])
        print(f"inference on 2,000 tensors: {infer_s:.2f} s in all, reading them {read_many:.2f} s, "
              f"{infer_s - read_many:.2f} s beyond reading; found {out[2]} renames and {out[3]} transforms "
              f"({len(renames)} and {len(swapped)} applied), {out[4]} unexplained")


if __name__ == "__main__":
    main()
