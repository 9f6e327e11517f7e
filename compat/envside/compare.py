"""Pure comparisons over key layouts, tensors and outputs.

Nothing here imports a library under test; the functions take plain data and tensors, so they are cheap to test.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch

KeyLayout = Mapping[str, Mapping[str, object]]  # key -> {"shape": [...], "dtype": "float32"}


def diff_keys(producer: KeyLayout, consumer: KeyLayout) -> dict:
    """Keys the consumer expects but the producer lacks, the reverse, and keys whose shape or dtype differ."""
    missing = sorted(set(consumer) - set(producer))
    unexpected = sorted(set(producer) - set(consumer))
    shape, dtype = [], []
    for key in sorted(set(producer) & set(consumer)):
        p, c = producer[key], consumer[key]
        if list(p["shape"]) != list(c["shape"]):
            shape.append({"key": key, "producer": list(p["shape"]), "consumer": list(c["shape"])})
        if p["dtype"] != c["dtype"]:
            dtype.append({"key": key, "producer": p["dtype"], "consumer": c["dtype"]})
    # the shapes of the keys only one side has: what makes a rename between them plausible (compat.host.renames)
    shapes = {key: list(consumer[key]["shape"]) for key in missing}
    shapes.update({key: list(producer[key]["shape"]) for key in unexpected})
    return {"missing": missing, "unexpected": unexpected, "shape": shape, "dtype": dtype, "shapes": shapes}


def keys_match(diff: Mapping[str, list]) -> bool:
    return not any(diff[field] for field in ("missing", "unexpected", "shape", "dtype"))


def bitwise_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal shape, dtype and bytes (so NaNs in the same places count as equal, and -0.0 != 0.0)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    a, b = a.detach().contiguous(), b.detach().contiguous()
    if a.numel() == 0:
        return True
    return torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))


def state_differences(expected: Mapping[str, torch.Tensor], actual: Mapping[str, torch.Tensor]) -> dict:
    """Where a state dict is not bit for bit the expected one: keys missing or unexpected, keys whose tensors differ,
    and the largest absolute difference among those of the same shape (0.0 when nothing comparable differs)."""
    mismatched = sorted(k for k in expected if k not in actual or not bitwise_equal(expected[k], actual[k]))
    worst = max((float((expected[k].double() - actual[k].double()).abs().max()) for k in mismatched
                 if k in actual and actual[k].shape == expected[k].shape), default=0.0)
    return {"exact": not mismatched and set(actual) == set(expected), "mismatched": mismatched,
            "missing": sorted(set(expected) - set(actual)), "unexpected": sorted(set(actual) - set(expected)),
            "max_abs": worst}


def output_stats(expected: torch.Tensor, actual: torch.Tensor) -> dict:
    """Similarity of an output to the reference: bitwise equality, max abs, max relative error, cosine similarity."""
    if tuple(expected.shape) != tuple(actual.shape):
        return {"bitwise": False, "shape_match": False,
                "expected_shape": list(expected.shape), "actual_shape": list(actual.shape)}
    bitwise = bitwise_equal(expected, actual)
    e, a = expected.detach().double().reshape(-1), actual.detach().double().reshape(-1)
    if e.numel() == 0:
        return {"bitwise": bitwise, "shape_match": True, "max_abs": 0.0, "max_rel": 0.0, "cosine": 1.0,
                "ref_max_abs": 0.0, "finite": True}
    delta = (e - a).abs()
    max_abs = float(delta.max())
    max_rel = float((delta / e.abs().clamp_min(1e-12)).max())
    denominator = float(e.norm() * a.norm())
    cosine = float(e @ a) / denominator if denominator > 0 else (1.0 if bitwise else 0.0)
    cosine = min(1.0, max(-1.0, cosine)) if math.isfinite(cosine) else cosine
    return {
        "bitwise": bitwise,
        "shape_match": True,
        "max_abs": _finite(max_abs),
        "max_rel": _finite(max_rel),
        "ref_max_abs": _finite(float(e.abs().max())),
        "cosine": _finite(cosine),
        "finite": bool(torch.isfinite(a).all()),
    }


def _finite(value: float) -> float | str:
    """JSON has no NaN or infinity; spell them out so the report stays valid."""
    return value if math.isfinite(value) else str(value)
