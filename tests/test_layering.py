"""The import graph follows README's layout: a stage imports only earlier stages and shared
infrastructure, nothing imports the CLI, and the plug-in registries import no stage."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "edgetran"
#: Shared infrastructure: imported by any floor, it imports only other infrastructure.
INFRASTRUCTURE = {
    *("edgetran", "errors", "cores", "seeding", "_versions", "devices", "plugins", "store"),
    "cluster",
}
#: The floors in data-flow order (``train`` beside ``model``, which it builds on).
FLOORS = [
    "space",
    "model",
    "train",
    "export",
    "profile",
    "surrogate",
    "search",
    "growprune",
    "codesign",
    "testing",
    "cli",
]


def _part(module: str) -> str:
    """The top-level part of ``edgetran`` a dotted module belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "edgetran"


def _imports() -> set[tuple[str, str, str]]:
    """(importing part, imported part, file) for every import of edgetran, lazy ones included
    (inside functions, or ``importlib.import_module("edgetran…")``)."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", "") == "import_module"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                names = [str(node.args[0].value)]
            else:
                continue
            for name in names:
                if name.split(".")[0] == "edgetran" and _part(name) != _part(module):
                    found.add((_part(module), _part(name), path.name))
    return found


def test_every_part_is_placed():
    parts = {p.stem for p in PACKAGE.iterdir() if p.suffix in (".py", "") and p.stem[:2] != "__"}
    assert parts - INFRASTRUCTURE - set(FLOORS) == set()


def test_no_import_from_a_higher_floor():
    def floor(part: str) -> int:
        return -1 if part in INFRASTRUCTURE else FLOORS.index(part)

    upward = sorted(
        f"{source} ({file}) imports {target}"
        for source, target, file in _imports()
        if target not in INFRASTRUCTURE and floor(target) >= floor(source)
    )
    assert upward == []


def test_plugins_imports_only_errors():
    assert {t for s, t, _ in _imports() if s == "plugins"} == {"errors"}


@pytest.mark.parametrize("family", ["TASKS", "METERS", "RUNTIMES", "MODES"])
def test_naming_a_plugin_imports_no_stage(family):
    probe = (
        "import sys, edgetran.plugins as p; "
        f"p.{family}.validate(p.{family}.names()[0]); "
        "print(*sorted(m for m in sys.modules if m.startswith('edgetran.')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    light = {"edgetran._versions", "edgetran.errors", "edgetran.plugins"}
    assert set(done.stdout.split()) <= light
