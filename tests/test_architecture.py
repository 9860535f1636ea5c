"""The package's edge, as an import graph: the library never imports the tooling, the tooling
rooms form no cycle, and the generation domains import none of their siblings.

Rooms are the packages (and top-level modules) under ``src/inferwatch``; every import counts,
including those deferred into functions for optional dependencies.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "inferwatch"
# What a monitored service imports and runs in production.
LIBRARY = {
    "<package>", "config", "metrics", "exposition", "http", "tracing", "ai", "pools", "exporters",
}  # fmt: skip
# What builds, runs and reports on the stack around it.
TOOLING = {
    "alerts",
    "alertmanager",
    "generation",
    "catalogue",
    "dashboards",
    "deploy",
    "stack",
    "demo",
    "reports",
    "alertsink",
    "cli",
}
# Domains whose files `inferwatch generate` writes (inferwatch.generation.registry): each is a
# pure function of the thresholds, and where one output is built from another's the registry
# composes them. The thresholds and rule model (alerts) is what they all read.
DOMAINS = {"dashboards", "deploy", "catalogue"}


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "<package>"


def _module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, src: Path = SRC) -> set[str]:
    """Every ``inferwatch`` module ``path`` imports, relative imports resolved."""
    module = _module_name(path, src)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.add(target)
            # `from inferwatch import alerts` imports the room, not only the package
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "inferwatch" or name.startswith("inferwatch.")}


def _is_module(name: str, src: Path) -> bool:
    relative = Path(*name.split("."))
    return (src / relative).with_suffix(".py").is_file() or (src / relative).is_dir()


def edges(src: Path = SRC) -> dict[tuple[str, str], set[str]]:
    """(from room, to room) -> the importing modules, for imports across rooms."""
    graph: dict[tuple[str, str], set[str]] = defaultdict(set)
    for path in sorted((src / "inferwatch").rglob("*.py")):
        source = _module_name(path, src)
        for target in imports(path, src):
            if not _is_module(target, src) or room(target) == room(source):
                continue
            if target == "inferwatch":
                continue  # the package's __init__ re-exports library names only
            graph[(room(source), room(target))].add(source)
    return graph


def cycles(graph: dict[tuple[str, str], set[str]], rooms: set[str]) -> list[list[str]]:
    """Every simple cycle among ``rooms``, each as its rooms in order (smallest first)."""
    successors: dict[str, set[str]] = defaultdict(set)
    for a, b in graph:
        if a in rooms and b in rooms:
            successors[a].add(b)
    found: set[tuple[str, ...]] = set()

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in sorted(successors[node]):
            if nxt == start:
                i = path.index(min(path))
                found.add(tuple(path[i:] + path[:i]))
            elif nxt not in path and nxt > start:
                walk(start, nxt, [*path, nxt])

    for start in sorted(rooms):
        walk(start, start, [start])
    return [list(c) for c in sorted(found)]


def test_every_room_is_classified() -> None:
    rooms = {room(_module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert rooms == LIBRARY | TOOLING
    assert not LIBRARY & TOOLING


def test_the_library_imports_no_tooling() -> None:
    crossings = {
        f"{', '.join(sorted(modules))} imports {b}"
        for (a, b), modules in edges().items()
        if a in LIBRARY and b in TOOLING
    }
    assert crossings == set()


def test_the_tooling_rooms_form_no_cycle() -> None:
    assert cycles(edges(), TOOLING) == []


def test_generation_domains_import_none_of_their_siblings() -> None:
    siblings = {
        (a, b): sorted(modules)
        for (a, b), modules in edges().items()
        if a in DOMAINS | {"alerts"} and b in DOMAINS
    }
    assert siblings == {}


def test_the_checks_catch_a_crossing_and_a_cycle(tmp_path: Path) -> None:
    """The graph sees what the tests above forbid: a library module importing a tooling room
    inside a function, and two tooling rooms importing each other."""
    package = tmp_path / "inferwatch"
    for name, text in {
        "__init__.py": "",
        "metrics/__init__.py": "def f():\n    from inferwatch.stack import runner\n",
        "stack/__init__.py": "",
        "stack/runner.py": "from ..reports import build\n",
        "reports/__init__.py": "",
        "reports/build.py": "from inferwatch.stack.runner import x\n",
    }.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    graph = edges(tmp_path)
    assert ("metrics", "stack") in graph
    assert cycles(graph, {"stack", "reports"}) == [["reports", "stack"]]
