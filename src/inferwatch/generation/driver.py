"""Write and check what the producers make, and own exactly what they made.

The ownership manifest, ``GENERATED.md`` at the project root, lists every path the producers
wrote and which producer owns it. A path the manifest gives to a producer that no longer
produces it is removed (or, under ``--check``, reported); files nobody listed are never
touched, whatever their name. Each folder holding generated files gets a ``GENERATED.md``
note saying which of its files are generated and from what.

>>> from inferwatch.generation.registry import Producer
>>> hello = Producer("hello", "this doctest", lambda thresholds: {"out/hello.txt": "hi\\n"})
>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> write(root, plan(root, None, [hello], complete=True))
>>> (root / "out/hello.txt").read_text()
'hi\\n'
>>> sorted(read_manifest(root).items())
[('out/GENERATED.md', 'hello'), ('out/hello.txt', 'hello')]
>>> plan(root, None, [hello], complete=True).stale
[]
>>> gone = Producer("hello", "this doctest", lambda thresholds: {})
>>> plan(root, None, [gone], complete=True).removed
['out/GENERATED.md', 'out/hello.txt']
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from inferwatch.generation import registry
from inferwatch.generation.registry import Producer

MANIFEST = "GENERATED.md"
NOTE = "GENERATED.md"
COMMAND = "inferwatch generate"
_ROW = re.compile(r"^\| `(?P<path>[^`]+)` \| (?P<producer>[a-z0-9-]+) \|$")


class RegionNotFound(ValueError):
    """A ``path#name`` output whose file lacks the ``<!-- name:start/end -->`` markers."""


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def _region_pattern(name: str) -> re.Pattern[str]:
    start, end = markers(name)
    return re.compile(re.escape(start) + r"(.*?)" + re.escape(end), re.DOTALL)


def replace_region(document: str, name: str, text: str, *, path: str = "the file") -> str:
    """``document`` with the text between ``name``'s markers replaced by ``text``."""
    pattern = _region_pattern(name)
    if pattern.search(document) is None:
        start, end = markers(name)
        raise RegionNotFound(f"{path}: no {name} section: expected a line {start} then {end}")
    start, end = markers(name)
    block = f"{start}\n\n{text.strip()}\n\n{end}"
    return pattern.sub(lambda _: block, document, count=1)


@dataclass(frozen=True)
class Plan:
    """What writing would do: whole files to write, generated files to remove."""

    changed: dict[str, str]  # path -> new text (regions already spliced into their file)
    removed: list[str]
    skipped: list[str] = field(default_factory=list)  # producers whose extras are missing

    @property
    def stale(self) -> list[str]:
        return sorted([*self.changed, *self.removed])


def read_manifest(root: Path) -> dict[str, str]:
    """Owned path -> producer name, from the manifest at ``root`` (empty if none yet)."""
    path = root / MANIFEST
    if not path.is_file():
        return {}
    owned = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _ROW.match(line)
        if match:
            owned[match["path"]] = match["producer"]
    return owned


def _table(rows: Iterable[tuple[str, str]], header: tuple[str, str]) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| `{left}` | {right} |" for left, right in rows]
    return "\n".join(lines)


def _manifest(owned: dict[str, str]) -> str:
    return (
        f"# Generated files\n\n"
        f"Written by `{COMMAND}`; `{COMMAND} --check` fails when any is stale. Do not edit\n"
        f"them: edit what the folder notes (`{NOTE}` in each folder) name, then run\n"
        f"`{COMMAND}`. This list is how it knows which files are its own: a file that is\n"
        f"listed and no longer produced is removed; a file that is not listed is never touched.\n"
        f"`path#name` is the part of `path` between `<!-- name:start -->` and\n"
        f"`<!-- name:end -->`.\n\n" + _table(sorted(owned.items()), ("path", "producer")) + "\n"
    )


def _note(folder: str, entries: list[tuple[str, Producer]]) -> str:
    rows = [(PurePosixPath(path).name, producer.source) for path, producer in sorted(entries)]
    return (
        f"# Generated files in {folder}/\n\n"
        f"Written by `{COMMAND}` (see the root `{MANIFEST}`); do not edit them by hand: edit\n"
        f"the source named here and run `{COMMAND}`. Other files here are hand-written.\n\n"
        + _table(rows, ("file", "generated from"))
        + "\n"
    )


def produce(thresholds: Any, producers: Sequence[Producer]) -> dict[str, tuple[str, Producer]]:
    """Every output path (or ``path#region``) -> (text, producer), for the given producers."""
    out: dict[str, tuple[str, Producer]] = {}
    for producer in producers:
        for rel, text in producer.make(thresholds).items():
            if rel in out:
                first = out[rel][1].name
                raise ValueError(f"{rel} is produced by both {first} and {producer.name}")
            out[rel] = (text, producer)
    return dict(sorted(out.items()))


def _with_notes(outputs: dict[str, tuple[str, Producer]]) -> dict[str, tuple[str, Producer]]:
    """The outputs plus one folder note per folder holding generated files (not the root)."""
    folders: dict[str, list[tuple[str, Producer]]] = {}
    for rel, (_, producer) in outputs.items():
        path = rel.split("#", 1)[0]
        folder = PurePosixPath(path).parent.as_posix()
        if folder != ".":
            folders.setdefault(folder, []).append((path, producer))
    notes = {}
    for folder, entries in folders.items():
        owner = entries[0][1]  # a note is owned by the first producer writing there
        notes[f"{folder}/{NOTE}"] = (_note(folder, entries), owner)
    return {**outputs, **notes}


def plan(
    root: Path,
    thresholds: Any,
    producers: Sequence[Producer] | None = None,
    *,
    complete: bool | None = None,
) -> Plan:
    """What ``write`` would change under ``root``.

    With every producer (``producers=None``: the registry) it also keeps the manifest and the
    folder notes, and removes what the manifest owns and nothing produces any more. A subset
    (a test, or one domain rendered elsewhere) gives just those files, unless ``complete``
    says the list stands for the whole registry. Producers whose
    optional packages are missing are skipped, and what they own is kept.
    """
    complete = producers is None if complete is None else complete
    chosen = list(registry.PRODUCERS if producers is None else producers)
    available = [p for p in chosen if p.available()]
    skipped = [p.name for p in chosen if not p.available()]
    outputs = produce(thresholds, available)
    # A region lives in a hand-written file of this project (the README): rendering into
    # another folder (--out) has none, and then has no region either.
    outputs = {
        rel: out
        for rel, out in outputs.items()
        if "#" not in rel or (root / rel.partition("#")[0]).is_file()
    }
    if complete:
        outputs = _with_notes(outputs)
    files: dict[str, str] = {}
    for rel, (text, _) in outputs.items():
        path, _, region = rel.partition("#")
        if not region:
            files[path] = text
            continue
        current = files.get(path)
        if current is None:
            current = (root / path).read_text(encoding="utf-8")
        files[path] = replace_region(current, region, text, path=path)
    removed: list[str] = []
    if complete:
        owned = {rel: producer.name for rel, (_, producer) in outputs.items()}
        for rel, name in read_manifest(root).items():
            if rel in owned:
                continue
            if name in skipped:
                owned[rel] = name  # left as it is until its producer can run again
            elif "#" not in rel and (root / rel).is_file():
                removed.append(rel)
        files[MANIFEST] = _manifest(owned)
    changed = {}
    for rel, text in files.items():
        path = root / rel
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            changed[rel] = text
    return Plan(changed, sorted(removed), skipped)


def write(root: Path, result: Plan) -> None:
    for rel, text in result.changed.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for rel in result.removed:
        (root / rel).unlink()
