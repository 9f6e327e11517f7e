"""Tensor values from raw bytes and back, for every safetensors dtype (standard library and numpy only).

Layout ops never decode: they move raw bytes viewed as unsigned integers of the dtype's width, which is exact for
every dtype. Value ops (cast, add_constant) decode to numbers, compute, and encode again.
"""

from __future__ import annotations

import numpy as np

from compat.shared.dtypes import ITEMSIZE

UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
FLOATS = {"F16": np.float16, "F32": np.float32, "F64": np.float64}
INTEGERS = {"I8": np.int8, "I16": np.int16, "I32": np.int32, "I64": np.int64, "U8": np.uint8, "U16": np.uint16,
            "U32": np.uint32, "U64": np.uint64}
NUMERIC = set(FLOATS) | set(INTEGERS) | {"BF16"}


def raw(data: bytes, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """The bytes of one tensor as an array of unsigned integers of the dtype's width."""
    return np.frombuffer(data, dtype=UNSIGNED[ITEMSIZE[dtype]]).reshape(shape)


def _e4m3fn_values() -> np.ndarray:
    """The 256 values of float8_e4m3fn (bias 7, no infinities, NaN at S.1111.111), by code."""
    codes = np.arange(256)
    exponent, mantissa = (codes >> 3) & 0xF, (codes & 7).astype(np.float64)
    values = np.where(exponent == 0, mantissa / 8 * 2.0 ** -6, (1 + mantissa / 8) * 2.0 ** (exponent - 7))
    values[(exponent == 15) & (mantissa == 7)] = np.nan
    return np.where(codes & 0x80, -values, values).astype(np.float32)


E4M3FN = _e4m3fn_values()


def decode(raw_values: np.ndarray, dtype: str) -> np.ndarray:
    """Values of a raw (unsigned-integer) array: floats as float64-capable numpy floats, bf16 through float32,
    float8 through float16 (e5m2 is the top byte of a float16) or a table (e4m3fn), bool as 0 and 1."""
    if dtype == "BF16":
        return (raw_values.astype(np.uint32) << 16).view(np.float32)
    if dtype == "F8_E5M2":
        return (raw_values.astype(np.uint16) << 8).view(np.float16)
    if dtype == "F8_E4M3":
        return E4M3FN[raw_values]
    if dtype in FLOATS:
        return raw_values.view(FLOATS[dtype])
    if dtype == "BOOL":
        return raw_values.view(np.uint8)
    return raw_values.view(INTEGERS[dtype])


def encode(values: np.ndarray, dtype: str) -> np.ndarray:
    """Raw (unsigned-integer) array of ``values`` in ``dtype``; bf16 rounds to nearest even like torch."""
    if dtype == "BF16":
        bits = np.asarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        nan = np.isnan(np.asarray(values, dtype=np.float32))
        return np.where(nan, (bits >> 16) | 0x40, rounded).astype(np.uint16)
    if dtype in FLOATS:
        return np.asarray(values).astype(FLOATS[dtype]).view(UNSIGNED[ITEMSIZE[dtype]])
    if dtype in INTEGERS:
        return np.asarray(values).astype(INTEGERS[dtype]).view(UNSIGNED[ITEMSIZE[dtype]])
    return np.asarray(values).astype(UNSIGNED[ITEMSIZE[dtype]])
