"""Recipe module for tests: diffusers' Flux conversion with compat's right inverse mapping, and with the halves left
unswapped (the mistake the conversion cells must catch), the same two for ``from_single_file``, plus the CogView4
probes. Loaded by path inside a release environment, like any fixtures module."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_BASE = Path(__file__).resolve().parent.parent.parent / "compat" / "fixtures" / "diffusers.py"
_spec = importlib.util.spec_from_file_location("compat_fixtures_diffusers_base", _BASE)
base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(base)

RECIPES = {
    "flux-conversion": base.flux_conversion(swap=True),
    "flux-conversion-unswapped": base.flux_conversion(swap=False),
    "flux-single-file": base.flux_single_file(swap=True),
    "flux-single-file-unswapped": base.flux_single_file(swap=False),
    "cogview4-embeddings": base.RECIPES["cogview4-embeddings"],
    "cogview4-control-embeddings": base.RECIPES["cogview4-control-embeddings"],
}
