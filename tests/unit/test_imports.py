"""The pipeline's stages import forward only: plan never imports apply, and no stage package imports one
that imports it back. Read from the source (every `import`, at module level or not, TYPE_CHECKING too),
so a cycle is caught before it is an ImportError at some import order."""

from __future__ import annotations

import ast
from pathlib import Path

import madengine

ROOT = Path(madengine.__file__).parent
# The stage packages (and what they build on) whose imports must form no cycle.
STAGES = ("errors", "files", "shape", "state", "lock", "graph", "plan", "apply", "backends", "results")


def imports(path: Path) -> set[str]:
    """Every `madengine.*` module a file names in an import."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # `from madengine import apply`
    return {name for name in found if name.split(".")[0] == "madengine"}


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def package_graph() -> dict[str, set[str]]:
    """package -> the packages of madengine its modules import (itself excluded)."""
    edges: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts
        package = parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")
        named = {package_of(name) for name in imports(path)} - {"", package}
        edges.setdefault(package, set()).update(p for p in named if (ROOT / p).exists() or (ROOT / f"{p}.py").exists())
    return edges


def test_plan_never_imports_apply() -> None:
    offenders = sorted(f"{path.relative_to(ROOT.parent)} imports {name}"
                       for path in (ROOT / "plan").rglob("*.py") for name in imports(path)
                       if name == "madengine.apply" or name.startswith("madengine.apply."))
    assert offenders == []


def test_the_stage_packages_import_one_another_without_a_cycle() -> None:
    edges = {p: {q for q in targets if q in STAGES} for p, targets in package_graph().items() if p in STAGES}
    cycles = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for package in sorted(edges):
        if package not in state:
            visit(package, [package])
    assert cycles == []


def test_the_checks_see_an_import_of_apply(tmp_path: Path) -> None:
    """The parse itself: each form of import is seen (else the tests above could pass on nothing)."""
    source = tmp_path / "m.py"
    source.write_text("import madengine.apply.engine\nfrom madengine import apply\n"
                      "def f():\n    from madengine.apply.slots import Slots\n")
    assert {"madengine.apply.engine", "madengine.apply", "madengine.apply.slots"} <= imports(source)
