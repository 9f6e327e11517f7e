"""safetensors dtype names and their widths in bytes (standard library only; host and worker share it)."""

ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
            "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}

MAX_DIMS = 32  # numpy and torch refuse more; no model's tensor comes near

# torch dtype (by name: this module imports no torch) -> the safetensors dtype an artifact stores it as
TORCH_TO_SAFETENSORS = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64",
                        "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}


def torch_dtype_table(torch) -> dict:
    """``TORCH_TO_SAFETENSORS`` keyed by the dtypes of the ``torch`` module given (imported by the caller)."""
    return {getattr(torch, name): code for name, code in TORCH_TO_SAFETENSORS.items()}
