"""YAML read into values that remember their file and line, and overlays merged onto them.

Validation happens after merging the user's overlay onto the shipped defaults, yet every
error must still point at the line the user wrote: each value carries its own location.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Node:
    """A YAML value: ``dict[str, Node]``, ``list[Node]`` or a scalar string (or None)."""

    value: Any
    source: str
    line: int
    tag: str = ""

    def where(self) -> str:
        return f"{self.source}:{self.line}"


class ThresholdsError(ValueError):
    """An invalid thresholds file; the message names the file, line and key."""

    def __init__(self, node: Node | None, key: str, message: str) -> None:
        where = node.where() if node is not None else "thresholds"
        super().__init__(f"{where}: {key}: {message}")
        self.node, self.key, self.message = node, key, message


def _convert(node: yaml.Node, source: str) -> Node:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        items: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in items:
                raise ThresholdsError(
                    Node(key, source, key_node.start_mark.line + 1), key, "duplicate key"
                )
            items[key] = _convert(value_node, source)
        return Node(items, source, line, "map")
    if isinstance(node, yaml.SequenceNode):
        return Node([_convert(item, source) for item in node.value], source, line, "seq")
    tag = node.tag.rsplit(":", 1)[-1]
    return Node(None if tag == "null" else str(node.value), source, line, tag)


def parse(text: str, source: str) -> Node:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        raise ThresholdsError(Node(None, source, line), "(syntax)", str(exc)) from None
    if root is None:
        return Node({}, source, 1, "map")
    return _convert(root, source)


def load(path: Path) -> Node:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        where = Node(None, str(path), 0)
        raise ThresholdsError(where, "(file)", exc.strerror or "unreadable") from None
    return parse(text, str(path))


def merge(base: Node, overlay: Node) -> Node:
    """Mappings merge key by key (the overlay wins); anything else is replaced whole."""
    if base.tag == "map" and overlay.tag == "map":
        merged = dict(base.value)
        for key, value in overlay.value.items():
            merged[key] = merge(merged[key], value) if key in merged else value
        return Node(merged, overlay.source, overlay.line, "map")
    return overlay


def plain(node: Node) -> Any:
    """The value without locations, for the open-ended sections."""
    if node.tag == "map":
        return {k: plain(v) for k, v in node.value.items()}
    if node.tag == "seq":
        return [plain(v) for v in node.value]
    return node.value
