"""Scratch folders for files a recipe writes only to read back at once (Flux's 1 GB original-layout file for
``from_single_file``): in memory (``/dev/shm``) when it has room, because the file's place is not under test and on
this kind of machine a disk write of 1 GB takes 10 s where tmpfs takes 0.7 s.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

MEMORY_BACKED = Path("/dev/shm")
HEADROOM = 4  # the memory left free after the file must hold this many files more (the model and its copies)


def scratch_folder(size: int) -> tempfile.TemporaryDirectory:
    """A temporary folder for a file of about ``size`` bytes: under ``COMPAT_SCRATCH_DIR`` when it is set (a machine
    whose /dev/shm is small, or the benchmark's on-disk baseline), else in memory when that leaves room, else the
    default temporary folder."""
    chosen = os.environ.get("COMPAT_SCRATCH_DIR") or (str(MEMORY_BACKED) if _room_in_memory(size) else None)
    return tempfile.TemporaryDirectory(dir=chosen)


def _room_in_memory(size: int) -> bool:
    try:
        free = shutil.disk_usage(MEMORY_BACKED).free
        available = _available_memory()
    except OSError:
        return False
    return free >= size and available >= (HEADROOM + 1) * size and os.access(MEMORY_BACKED, os.W_OK)


def _available_memory() -> int:
    """MemAvailable from /proc/meminfo (tmpfs pages are memory); OSError where there is no such file."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise OSError("no MemAvailable in /proc/meminfo")
