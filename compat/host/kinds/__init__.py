"""The host side of the recipe kinds: each module here judges the findings of the environment-side kind of the same
name (``compat/envside/kinds/``) and says its evidence in lines a person reads.

A kind module has ``KIND`` (the name its findings carry), ``FIELDS`` (the fields its findings add to those every
kind shares, ``compat.shared.protocol.COMMON``: name -> (type, meaning)), ``judge(finding, recipe) -> (verdict,
summary)`` for a finding whose status is ok, and ``evidence(finding) -> list[str]`` for its own fields (the shared
ones are said by ``common.evidence_lines``). Modules are found by listing this package: adding a kind is one module
here, one in ``compat/envside/kinds/``, and their tests.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def _discover() -> dict[str, ModuleType]:
    found = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "KIND"):
            found[module.KIND] = module
    return found


KINDS: dict[str, ModuleType] = _discover()


def kind_fields() -> dict[str, dict]:
    """Each kind's own finding fields, for ``compat.shared.protocol.check_finding``."""
    return {name: module.FIELDS for name, module in KINDS.items()}
