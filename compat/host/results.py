"""Cell findings kept between runs: the worker writes one file per cell; this index keeps them in one file per library.

A rerun with nothing changed must not grow with the matrix: reading 15,000 small files costs seconds, one file per
library a fraction of one. The per-cell files stay the source (a worker that is killed mid-run loses nothing it
finished, and pytest-xdist processes write side by side); the index is a cache of them, merged under a lock when a run
ends. A finding that is in neither is not known: the cell is checked again. A finding is checked against the
protocol's schema (``compat/shared/protocol.py``) when it is first read from its file.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from compat.host.kinds import kind_fields
from compat.host.store import Store, file_lock
from compat.shared.protocol import check_finding

INDEX = "index.json"


class ResultIndex:
    def __init__(self, cache_dir: Path):
        self.folder = Store(Path(cache_dir)).results()
        self._indexes: dict[str, dict[str, dict]] = {}
        self._added: dict[str, dict[str, dict]] = {}
        self._lock = threading.Lock()

    def _index(self, library: str) -> dict[str, dict]:
        if library not in self._indexes:
            try:
                loaded = json.loads((self.folder / library / INDEX).read_text())
            except (OSError, ValueError):
                loaded = {}
            self._indexes[library] = loaded if isinstance(loaded, dict) else {}
        return self._indexes[library]

    @staticmethod
    def _key(library: str, path: Path) -> str:
        """``recipe/file.json``: a cell's file is results/<library>/<recipe>/<key>.json."""
        return f"{path.parent.name}/{path.name}"

    def has(self, library: str, path: Path) -> bool:
        return self._key(library, path) in self._index(library) or path.is_file()

    def get(self, library: str, path: Path) -> dict | None:
        """The finding a worker recorded at ``path``, from the index or the file (then added to the index)."""
        key = self._key(library, path)
        with self._lock:
            found = self._index(library).get(key)
        if found is not None:
            return found
        try:
            found = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except ValueError:  # a file cut short by a killed worker: the cell is checked again
            path.unlink(missing_ok=True)
            return None
        problems = check_finding(found, kind_fields())
        if problems:  # the protocol's schema, checked once, when a finding first comes back from a worker
            return {"status": "error", "reason": f"{path}: the finding does not fit the protocol: "
                    + "; ".join(problems[:5])}
        with self._lock:
            self._index(library)[key] = found
            self._added.setdefault(library, {})[key] = found
        return found

    def save(self) -> None:
        """Merge what this run read from files into each library's index (other processes may have added theirs)."""
        with self._lock:
            added, self._added = self._added, {}
        for library, entries in added.items():
            path = self.folder / library / INDEX
            path.parent.mkdir(parents=True, exist_ok=True)
            with file_lock(path.with_suffix(".lock")):
                try:
                    merged = json.loads(path.read_text())
                except (OSError, ValueError):
                    merged = {}
                merged.update(entries)
                scratch = path.with_suffix(f".{os.getpid()}.tmp")
                scratch.write_text(json.dumps(merged))
                os.replace(scratch, path)
