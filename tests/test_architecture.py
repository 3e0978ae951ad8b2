"""The import rule: a sub-package imports only the shared core and its own siblings.

Sub-packages (search, flickr, images, store, emulator, dataset, ...) are the stages; the shared
core is `CORE`. Only the top-level modules (engine, runner, cli and the command helpers) import
across sub-packages, so a stage never learns another stage's names. Function-level imports and
`if TYPE_CHECKING:` imports count too: the rule is about what a module knows, not when.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "harvester"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE
#: The modules every part of the package may import.
CORE = frozenset({"records", "exceptions", "config", "retry", "licenses"})
#: Top-level modules held to less than the core: exit codes map errors, nothing more.
NARROW = {"harvester.exit_codes": frozenset({"exceptions"})}


def imported_modules(module: str, source: str) -> list[str]:
    """Every module `source` (the text of `module`, dotted) imports, relative ones resolved.

    `from a import b` yields `a.b`, since `b` may be a module; the rule below only looks at
    the first two components, so a name inside `a` does no harm.
    """
    package = module.split(".")[:-1]  # `harvester.images.__init__` names its package too
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found += [f"{base}.{alias.name}" for alias in node.names]
    return found


def forbidden_imports(module: str, source: str) -> list[str]:
    """The imports of `module` that break the rule (empty when it keeps it)."""
    parts = module.split(".")
    if module in NARROW:
        allowed = NARROW[module]
    elif len(parts) > 2:  # harvester.<package>.<module>: a stage
        allowed = CORE | {parts[1]}
    elif parts[-1] in CORE:
        allowed = CORE
    else:
        return []  # engine, runner, cli and the command helpers: where the stages meet
    bad: list[str] = []
    for name in imported_modules(module, source):
        target = name.split(".")
        if target[0] == PACKAGE and len(target) > 1 and target[1] not in allowed:
            bad.append(name)
    return bad


def module_name(path: Path) -> str:
    """`harvester/images/writer.py` → `harvester.images.writer`."""
    relative = path.relative_to(ROOT.parent).with_suffix("")
    return ".".join(relative.parts)


def test_every_module_keeps_the_import_rule() -> None:
    broken = {
        module_name(path): bad
        for path in sorted(ROOT.rglob("*.py"))
        if (bad := forbidden_imports(module_name(path), path.read_text(encoding="utf-8")))
    }
    assert broken == {}


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        # a stage importing the core and its own siblings: allowed
        ("harvester.store.sqlite", "from harvester.records import Window", []),
        ("harvester.store.merge", "from harvester.store.sqlite import Store", []),
        ("harvester.images.process", "from harvester.images import jpegmeta", []),
        ("harvester.images.process", "from . import jpegmeta\nfrom .frames import CropBox", []),
        ("harvester.flickr.client", "import aiohttp\nfrom harvester import config", []),
        # a stage importing another stage: forbidden, however it is spelt
        (
            "harvester.store.sqlite",
            "from harvester.search.windows import Window",
            ["harvester.search.windows.Window"],
        ),
        ("harvester.store.sqlite", "import harvester.images.writer", ["harvester.images.writer"]),
        ("harvester.store.sqlite", "from harvester import engine", ["harvester.engine"]),
        ("harvester.store.sqlite", "from ..search import loop", ["harvester.search.loop"]),
        (
            "harvester.images.download",
            "def f():\n    from harvester.flickr.client import FlickrClient\n",
            ["harvester.flickr.client.FlickrClient"],
        ),
        (
            "harvester.search.loop",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from harvester.store.sqlite import Store\n",
            ["harvester.store.sqlite.Store"],
        ),
        # the serve room knows the core, not the store or search: serving.py fills its seams
        ("harvester.serve.app", "from harvester.config import ServePolicy", []),
        ("harvester.serve.app", "from harvester.serve.pages import Library", []),
        (
            "harvester.serve.app",
            "from harvester.store.sqlite import Store",
            ["harvester.store.sqlite.Store"],
        ),
        (
            "harvester.serve.pages",
            "from harvester.similar import SimilarResult",
            ["harvester.similar.SimilarResult"],
        ),
        ("harvester.serving", "from harvester.store.serve import ServeStore", []),
        # the core imports only the core
        ("harvester.records", "from harvester.exceptions import StoreError", []),
        (
            "harvester.exceptions",
            "from harvester.images import writer",
            ["harvester.images.writer"],
        ),
        # the top-level modules are where the stages meet
        ("harvester.engine", "from harvester.store.sqlite import Store", []),
        ("harvester.cli", "from harvester.search.queries import load_queries", []),
        ("harvester.merge", "from harvester.images.writer import photo_path", []),
        # ...except those held to less
        ("harvester.exit_codes", "from harvester.exceptions import DiskFullError", []),
        (
            "harvester.exit_codes",
            "from harvester.images.writer import DiskFullError",
            ["harvester.images.writer.DiskFullError"],
        ),
        ("harvester.exit_codes", "from harvester import config", ["harvester.config"]),
    ],
)
def test_the_rule_catches_what_it_should(module: str, source: str, expected: list[str]) -> None:
    assert forbidden_imports(module, source) == expected
