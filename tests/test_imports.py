"""mcu_ray's import graph has no cycle.

Every ``import`` and ``from ... import`` in the package counts, at module level and inside
functions alike (a deferred import hides a cycle from Python at start-up, not from the reader
who has to change both modules together). ``from mcu_ray import x`` and ``from . import x`` count
as importing the submodule ``x`` when there is one; an imported name that is not a submodule
counts as importing the module that defines it.
"""
from __future__ import annotations

import ast
from pathlib import Path

import mcu_ray

PACKAGE = Path(mcu_ray.__file__).parent


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under the package folder ``root``."""
    names = {}
    for file in sorted(root.rglob("*.py")):
        parts = [root.name, *file.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = file
    return names


def imported_modules(module: str, file: Path, modules: dict) -> set[str]:
    """The package's modules that ``module`` (at ``file``) imports anywhere in its code."""
    package = module if file.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names}
    return {_within(name, modules) for name in found} - {None, module}


def _within(name: str, modules: dict) -> str | None:
    """``name`` or its nearest enclosing module of the package; None outside it."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = module_names(root)
    return {module: imported_modules(module, file, modules) for module, file in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of ``graph`` as [a, b, ..., a], or [] when it has none (depth-first, white/grey/black)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        stack.pop()
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph(PACKAGE))
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_a_cycle_through_a_function_level_relative_import_is_found(tmp_path):
    """The walker sees what the package test relies on: imports inside functions, ``from . import x``
    resolved to the submodule and ``from pkg.mod import name`` to the module defining ``name``."""
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "errors.py").write_text("import os\nclass Error(Exception): pass\n")
    (root / "sub" / "__init__.py").write_text("from . import leaf\n")
    (root / "sub" / "leaf.py").write_text("from pkg.spec import Spec\n")
    (root / "spec.py").write_text("from pkg.errors import Error\nclass Spec: pass\n"
                                  "def parse():\n    from pkg import sub\n")
    graph = import_graph(root)
    assert graph == {"pkg": set(), "pkg.errors": set(), "pkg.sub": {"pkg.sub.leaf"}, "pkg.sub.leaf": {"pkg.spec"},
                     "pkg.spec": {"pkg.errors", "pkg.sub"}}
    assert find_cycle(graph) == ["pkg.spec", "pkg.sub", "pkg.sub.leaf", "pkg.spec"]
    (root / "sub" / "leaf.py").write_text("from pkg.errors import Error\n")
    assert find_cycle(import_graph(root)) == []
