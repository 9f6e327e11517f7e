"""Read YAML keeping the line of every value, so validation errors can point at ``file:line``; within limits.

PyYAML's composer gives nodes with positions; we turn them into plain data and a map from the path of each value
(a tuple of keys and indexes) to its line. Plain scalars also keep their raw text, because YAML reads ``0.30`` as the
number 0.3 and a version must be read as written.

Every YAML file compat reads (matrices, rule files, constructor arguments) comes through ``load_located``, which
bounds what a hostile file can cost: nesting deeper than ``MAX_DEPTH`` (also through aliases, and so a recursive
alias), more than ``MAX_VALUES`` values after expanding aliases (a "billion laughs" file), scalars PyYAML parses but
cannot construct (``!!int abc``, an impossible date), text that is not UTF-8 or holds a NUL byte or an unpaired
surrogate: each is one ``yaml.YAMLError`` naming the line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from compat.shared.untrusted import MAX_DEPTH, read_text, text_ok

MAX_VALUES = 100_000
Path_ = tuple  # a path into the document: ("libraries", "x-transformers", "versions", 2)


@dataclass
class Located:
    """A parsed YAML document with the line (1-based) and raw text of each value."""

    data: Any
    file: str
    lines: dict[Path_, int] = field(default_factory=dict)
    raw: dict[Path_, str] = field(default_factory=dict)

    def line(self, path: Path_) -> int:
        """The line of ``path``, or of its nearest ancestor that has one."""
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)


class DuplicateKey(yaml.YAMLError):
    pass


class _BoundedLoader(yaml.SafeLoader):
    """The safe loader, composing no deeper than ``MAX_DEPTH``: PyYAML's composer recurses in Python."""

    depth = 0

    def compose_node(self, parent, index):
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.YAMLError(f"line {mark.line + 1}: nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def load_located(path: Path, what: str = "YAML file") -> Located:
    """The document at ``path``; ``yaml.YAMLError`` (or compat's ``UntrustedInputError`` for unreadable text)."""
    text = read_text(path, what)
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
    except RecursionError:
        raise yaml.YAMLError(f"nested deeper than {MAX_DEPTH} levels") from None
    finally:
        loader.dispose()
    located = Located(data=None, file=str(path))
    located.data = _Walk(located).convert(node, (), 0) if node is not None else None
    return located


class _Walk:
    """Nodes to plain data, counting values (aliases expand) and depth (aliases nest)."""

    def __init__(self, located: Located):
        self.located, self.values = located, 0

    def convert(self, node: yaml.Node, path: Path_, depth: int) -> Any:
        self.values += 1
        line = node.start_mark.line + 1
        if depth > MAX_DEPTH:
            raise yaml.YAMLError(f"line {line}: nested deeper than {MAX_DEPTH} levels (through aliases?)")
        if self.values > MAX_VALUES:
            raise yaml.YAMLError(f"line {line}: more than {MAX_VALUES} values once aliases are expanded")
        self.located.lines[path] = line
        if isinstance(node, yaml.MappingNode):
            result = {}
            for key_node, value_node in node.value:
                key = _scalar(key_node)
                if key in result:
                    raise DuplicateKey(f"{self.located.file}:{key_node.start_mark.line + 1}: duplicate key {key!r}")
                result[key] = self.convert(value_node, path + (key,), depth + 1)
                self.located.lines[path + (key,)] = key_node.start_mark.line + 1  # the key's line, not its value's
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, path + (index,), depth + 1) for index, item in enumerate(node.value)]
        self.located.raw[path] = node.value
        return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    line = node.start_mark.line + 1
    if not isinstance(node, yaml.ScalarNode):
        raise yaml.YAMLError(f"line {line}: a key must be a plain value")
    try:
        value = yaml.SafeLoader("").construct_object(node)
    except yaml.YAMLError:
        raise
    except Exception as exc:  # noqa: BLE001 - `2021-13-45` parses as a date that cannot exist; `!!timestamp x`
        raise yaml.YAMLError(f"line {line}: {node.value!r} cannot be read as {node.tag}: "
                             f"{type(exc).__name__}: {exc}") from None
    if isinstance(value, str) and not text_ok(value):
        raise yaml.YAMLError(f"line {line}: text with a NUL byte or an unpaired surrogate")
    if isinstance(value, bytes):
        raise yaml.YAMLError(f"line {line}: binary values are not accepted")
    return value


def load_data(path: Path, what: str) -> Any:
    """Plain data from a YAML (or JSON) file, within the same limits."""
    return load_located(path, what).data
