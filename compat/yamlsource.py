"""Read YAML keeping the line of every value, so validation errors can point at ``file:line``.

PyYAML's composer gives nodes with positions; we turn them into plain data and a map from the path of each value
(a tuple of keys and indexes) to its line. Plain scalars also keep their raw text, because YAML reads ``0.30`` as the
number 0.3 and a version must be read as written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

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


def load_located(path: Path) -> Located:
    text = path.read_text()
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    located = Located(data=None, file=str(path))
    located.data = _convert(node, (), located) if node is not None else None
    return located


def _convert(node: yaml.Node, path: Path_, located: Located) -> Any:
    located.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            if key in result:
                raise DuplicateKey(f"{located.file}:{key_node.start_mark.line + 1}: duplicate key {key!r}")
            result[key] = _convert(value_node, path + (key,), located)
            located.lines[path + (key,)] = key_node.start_mark.line + 1  # point at the key, not its value
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, path + (index,), located) for index, item in enumerate(node.value)]
    located.raw[path] = node.value
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise yaml.YAMLError(f"line {node.start_mark.line + 1}: a key must be a plain value")
    return yaml.SafeLoader("").construct_object(node)
