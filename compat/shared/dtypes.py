"""safetensors dtype names and their widths in bytes (standard library only; host and worker share it)."""

ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
            "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}

MAX_DIMS = 32  # numpy and torch refuse more; no model's tensor comes near
