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
    """An invalid thresholds file; the message names the file, line and key.

    One error stands for every mistake found at once (:meth:`of`): a user who fixes a file
    should not learn of its mistakes one run at a time. ``node``, ``key`` and ``message`` are
    the first one's; ``errors`` lists them all, one line each in the message.
    """

    def __init__(self, node: Node | None, key: str, message: str) -> None:
        super().__init__(f"{_where(node)}: {key}: {message}")
        self.node, self.key, self.message = node, key, message
        self.errors: list[ThresholdsError] = [self]

    @classmethod
    def of(cls, errors: list[ThresholdsError]) -> ThresholdsError:
        """One error for ``errors`` (not empty): by file and line, each mistake once."""
        unique = list({str(e): e for e in errors}.values())
        unique.sort(key=lambda e: (e.node.source, e.node.line) if e.node else ("", 0))
        if len(unique) == 1:
            return unique[0]
        first = unique[0]
        combined = cls(first.node, first.key, first.message)
        combined.args = ("\n".join(str(e) for e in unique),)
        combined.errors = unique
        return combined


def _where(node: Node | None) -> str:
    return node.where() if node is not None else "thresholds"


def _convert(node: yaml.Node, source: str, errors: list[ThresholdsError]) -> Node:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        items: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in items:  # the first one stays; the file goes on being read
                where = Node(key, source, key_node.start_mark.line + 1)
                errors.append(ThresholdsError(where, key, "duplicate key"))
                continue
            items[key] = _convert(value_node, source, errors)
        return Node(items, source, line, "map")
    if isinstance(node, yaml.SequenceNode):
        entries = [_convert(item, source, errors) for item in node.value]
        return Node(entries, source, line, "seq")
    tag = node.tag.rsplit(":", 1)[-1]
    return Node(None if tag == "null" else str(node.value), source, line, tag)


def parse(text: str, source: str, errors: list[ThresholdsError] | None = None) -> Node:
    """``text`` read; a syntax error raises. A duplicate key (the first one is kept) is added
    to ``errors`` when given, so that the file's other mistakes are found too, else raised."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        raise ThresholdsError(Node(None, source, line), "(syntax)", str(exc)) from None
    if root is None:
        return Node({}, source, 1, "map")
    found: list[ThresholdsError] = []
    converted = _convert(root, source, found)
    if found and errors is None:
        raise ThresholdsError.of(found)
    if errors is not None:
        errors.extend(found)
    return converted


def load(path: Path, errors: list[ThresholdsError] | None = None) -> Node:
    """The file at ``path`` read as :func:`parse` reads text."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        where = Node(None, str(path), 0)
        raise ThresholdsError(where, "(file)", exc.strerror or "unreadable") from None
    return parse(text, str(path), errors)


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
