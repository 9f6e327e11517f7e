"""compat: cross-release checkpoint compatibility for PyTorch model libraries.

Three zones, one folder each:

- ``compat/shared``: no torch, imported by both sides (errors, dtypes, the safetensors reader, the rule engine, the
  stamp, the protocol and finding schema);
- ``compat/envside``: runs inside release environments (torch and the library under test, imported lazily): the
  worker, the recipe engine and the recipe kinds;
- ``compat/host``: the matrix, plan, store, environments, runner, verdicts, report.

``api.py`` is the one API; ``cli.py`` and ``pytest_plugin.py`` are its faces. This module must stay importable inside
every release environment (standard library only): the worker runs as ``python -m compat.envside.worker`` with the
source root on ``PYTHONPATH``.
"""

from pathlib import Path

__version__ = "0.1.0"

PACKAGE_ROOT = Path(__file__).resolve().parent  # compat/
SOURCE_ROOT = PACKAGE_ROOT.parent  # what a worker's PYTHONPATH holds
