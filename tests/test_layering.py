"""The layering the README states, checked on the code: a stage imports only earlier stages and
shared infrastructure, and nothing imports the CLI. Imports inside functions count too (the
heavy ones live there)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "edgetran"

#: The floors of the data flow, lowest first; ``train`` (the accuracy oracle) stands beside
#: ``model`` and may use it, never the other way round.
FLOORS = {
    "space": 0,
    "model": 1,
    "train": 2,
    "export": 3,
    "profile": 4,
    "surrogate": 5,
    "search": 6,
    "growprune": 7,
    "codesign": 8,
}
#: Underneath every floor: each may import only the others of this set.
SHARED = {"__init__", "_versions", "errors", "configs", "cores", "seeding", "devices", "plugins",
          "store", "metrics", "cluster"}  # fmt: skip
#: Above the floors: the contract kits may import any floor, the CLI anything; neither is
#: imported by a floor.
TOP = {"testing": 9, "cli": 10}


def _part(module: str) -> str | None:
    """``edgetran.search.study`` → ``search``; None outside the package."""
    names = module.split(".")
    if names[0] != "edgetran":
        return None
    return names[1] if len(names) > 1 else "__init__"


def _imported(path: Path) -> set[str]:
    """The package parts ``path`` imports anywhere in its body."""
    parts = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            parts.update(_part(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's own package
                base = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
                base = base[: len(base) - node.level]
                parts.add(_part(".".join([*base, node.module or ""]).rstrip(".")))
            elif node.module:
                parts.add(_part(node.module))
        elif _imports_by_name(node):  # importlib.import_module("edgetran.…")
            parts.add(_part(node.args[0].value))
    return parts - {None}


def _imports_by_name(node: ast.AST) -> bool:
    """Whether ``node`` is ``import_module("<literal>")`` (a lazy import, counted too)."""
    return (
        isinstance(node, ast.Call)
        and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
        and bool(node.args)
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    )


def _own_part(path: Path) -> str:
    relative = path.relative_to(PACKAGE).parts
    return relative[0] if len(relative) > 1 else relative[0].removesuffix(".py")


def _rank(part: str) -> int:
    if part in SHARED:
        return -1
    rank = FLOORS.get(part, TOP.get(part))
    if rank is None:
        pytest.fail(f"edgetran.{part} is on no floor: add it to FLOORS, SHARED or TOP here")
    return rank


def _allowed(source: str, target: str) -> bool:
    if source in SHARED:
        return target in SHARED
    return _rank(target) < _rank(source)


def test_no_module_imports_a_higher_floor():
    wrong = sorted(
        f"{path.relative_to(PACKAGE)} imports edgetran.{target}"
        for path in PACKAGE.rglob("*.py")
        for target in _imported(path)
        if target != _own_part(path) and not _allowed(_own_part(path), target)
    )
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_the_check_sees_a_back_arrow():
    # the rule itself, on the two arrows it exists to refuse
    assert not _allowed("model", "train")
    assert not _allowed("store", "search")
    assert not _allowed("codesign", "cli")
    assert _allowed("search", "surrogate") and _allowed("train", "model")


def test_the_registries_import_no_stage():
    """Issue 41: built-in plug-ins are registered by ``"module:attr"`` paths, tasks included,
    so ``plugins`` (which every stage imports) imports no stage, not even lazily."""
    assert _imported(PACKAGE / "plugins.py") == {"errors"}


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
