"""Environment keys: what decides an environment's contents, and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent.parent
KEY = ("from pathlib import Path; from compat.host.environments import EnvironmentBuilder;"
       "from compat.host.pipconfig import read_index_settings;"
       "print(EnvironmentBuilder(Path('cache'), read_index_settings(), torch_version='2.13.0').base_key())")


def test_two_spellings_of_one_interpreter_share_one_cache(tmp_path):
    """`compat run` starts bin/python3, `python -m compat.cli` and pytest bin/python: one interpreter."""
    keys = set()
    for name in ("python", "python3"):
        link = tmp_path / name
        link.symlink_to(os.path.realpath(sys.executable))
        keys.add(subprocess.run([str(link), "-c", KEY], capture_output=True, text=True, check=True, cwd=PROJECT,
                                env=dict(os.environ, PYTHONPATH=str(PROJECT))).stdout.strip())
    assert len(keys) == 1 and len(next(iter(keys))) == 20
