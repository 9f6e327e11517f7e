"""compat: cross-release checkpoint compatibility for PyTorch model libraries.

This module must stay importable inside every release environment (standard library only):
the worker runs as ``python -m compat.envside.worker`` with the project on ``PYTHONPATH``.
"""

__version__ = "0.1.0"
