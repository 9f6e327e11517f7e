"""Text and JSON that come from strangers (reports, manifests, indexes, stamps, rule files), read within limits.

Every reader of a user's file goes through here or through ``compat.host.yamlsource`` (YAML), so that the same bounds hold
everywhere: a size cap, UTF-8 text, nesting no deeper than ``MAX_DEPTH`` (Python's own parsers raise
``RecursionError`` on a few kilobytes of brackets, and any code that walks the value recursively would too), and no
string holding a NUL byte or an unpaired surrogate (they break file names and the terminal far from where they were
read). Each violation is one ``CompatError`` naming the file and, where there is one, the field.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from compat.shared.errors import CompatError

MAX_BYTES = 64 * 1024 * 1024  # a report of a matrix ten times today's is ~60 MB
MAX_DEPTH = 64
MAX_VALUES = 5_000_000
BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


class UntrustedInputError(CompatError):
    """A file compat was given cannot be used; the message names the file and the field."""


def read_text(path: Path | str, what: str, limit: int = MAX_BYTES) -> str:
    """A file's text: at most ``limit`` bytes, valid UTF-8."""
    path = Path(path)
    try:
        if path.stat().st_size > limit:
            raise UntrustedInputError(f"{path}: {what} of {path.stat().st_size} bytes is larger than the {limit} "
                                      "bytes compat reads")
        data = path.read_bytes()
    except OSError as exc:
        raise UntrustedInputError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    except ValueError as exc:  # a NUL byte in the path itself
        raise UntrustedInputError(f"{path!r}: not a usable path: {exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UntrustedInputError(f"{path}: the {what} is not UTF-8 text (byte {exc.start})") from None


def parse_json(text: str | bytes, where: str, what: str = "file", **options: Any) -> Any:
    """``json.loads`` that refuses, naming ``where``, what is not JSON or nests deeper than ``MAX_DEPTH``."""
    try:
        value = json.loads(text, **options)
    except RecursionError:
        raise UntrustedInputError(f"{where}: the {what} nests deeper than compat reads ({MAX_DEPTH} levels)") from None
    except (ValueError, TypeError) as exc:
        raise UntrustedInputError(f"{where}: the {what} is not valid JSON: {exc}") from None
    check_value(value, where)
    return value


def read_json_mapping(path: Path, what: str, field: str) -> dict:
    """A JSON file a library wrote (a model's or an adapter's config): a mapping whose ``field`` is a string."""
    value = parse_json(read_text(path, what), str(path), what)
    if not isinstance(value, dict) or not isinstance(value.get(field), str):
        raise UntrustedInputError(f"{path}: not a {what} (a mapping with a {field})")
    return value


def check_value(value: Any, where: str) -> None:
    """Depth, size and text of a parsed value, walked without recursion."""
    stack = [(value, 0, "")]
    seen = 0
    while stack:
        item, depth, field = stack.pop()
        seen += 1
        if depth > MAX_DEPTH:
            raise UntrustedInputError(f"{where}: {field or 'the value'} nests deeper than {MAX_DEPTH} levels")
        if seen > MAX_VALUES:
            raise UntrustedInputError(f"{where}: more than {MAX_VALUES} values")
        if isinstance(item, str):
            if BAD_TEXT.search(item):
                raise UntrustedInputError(f"{where}: {field or 'a value'}: text with a NUL byte or an unpaired "
                                          "surrogate")
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and BAD_TEXT.search(key):
                    raise UntrustedInputError(f"{where}: {field or 'a'} key with a NUL byte or an unpaired surrogate")
                stack.append((child, depth + 1, f"{field}.{key}" if field else str(key)))
        elif isinstance(item, list):
            stack.extend((child, depth + 1, f"{field}[{index}]") for index, child in enumerate(item))


def text_ok(text: str) -> bool:
    """No NUL byte and no unpaired surrogate: safe for a file name and for the terminal."""
    return not BAD_TEXT.search(text)
