"""Deterministic, name-derived weight fills.

A checkpoint whose weights sit at their initialisation (zeros, ones, identity) can hide a swapped key, a transpose or
swapped halves. Every floating parameter is therefore overwritten with values drawn from a generator seeded by a hash
of the parameter's name, so two different parameters never share values and the same name always gets the same values
in every release.
"""

from __future__ import annotations

import hashlib

import torch


def name_seed(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:7], "little")


def fill_value(name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """Values for one parameter: N(0, 1/fan_in) for matrices, 1 + N(0, 0.1) for vectors and scalars.

    The scaling keeps activations of a small model in a sane range so outputs are informative, not saturated.
    """
    generator = torch.Generator().manual_seed(name_seed(name))
    values = torch.randn(shape, generator=generator, dtype=torch.float64)
    if len(shape) >= 2:
        values = values / max(shape[-1], 1) ** 0.5
    else:
        values = 1.0 + 0.1 * values
    return values.to(dtype)


@torch.no_grad()
def fill_parameters(module: torch.nn.Module) -> None:
    """Overwrite every floating parameter of ``module`` in place; buffers keep what the library computed."""
    for name, parameter in module.named_parameters():
        if parameter.dtype.is_floating_point:
            parameter.copy_(fill_value(name, tuple(parameter.shape), parameter.dtype))
