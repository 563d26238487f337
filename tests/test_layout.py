"""The tests mirror the package: every module of mcu_ray/ has its test module, and test modules share
code through tests/helpers.py (fixtures through conftest.py), never by importing one another.

The rule: ``mcu_ray/a/b.py`` is tested in ``tests/a/test_b.py``; a package's ``__init__.py`` and
``__main__.py`` (what ``import mcu_ray.a`` and ``python -m mcu_ray.a`` run) in ``tests/test_a.py``,
beside the folder of its modules' tests. The top-level package is the one exception (``COVERED_ELSEWHERE``).
"""
from __future__ import annotations

import ast

import pytest

from tests.helpers import REPO

PACKAGE, TESTS = REPO / "mcu_ray", REPO / "tests"
# The top-level package has no tests/test_mcu_ray.py: each of its two files is a thin door to a module with
# its own tests, and the test named here goes through that door (it must still contain the text given).
COVERED_ELSEWHERE = {
    "mcu_ray/__init__.py": ("tests/test_examples.py", "mcu_ray.load("),  # load() is tables.load, imported late
    "mcu_ray/__main__.py": ("tests/test_cli.py", '"-m", "mcu_ray", "sweep"'),  # runs cli.main
}


def mirror_of(module) -> str:
    """The test module of ``module`` (a path under mcu_ray/), relative to the repository, by the rule above."""
    if module.name in ("__init__.py", "__main__.py"):
        return f"tests/test_{module.parent.name}.py"
    return "/".join(("tests", *module.relative_to(PACKAGE).parts[:-1], f"test_{module.name}"))


def modules() -> list[str]:
    return sorted(str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py"))


def test_the_rule_maps_modules_packages_and_commands():
    assert mirror_of(PACKAGE / "train.py") == "tests/test_train.py"
    assert mirror_of(PACKAGE / "methods" / "npo.py") == "tests/methods/test_npo.py"
    assert mirror_of(PACKAGE / "report" / "__main__.py") == "tests/test_report.py"
    assert mirror_of(PACKAGE / "tasks" / "__init__.py") == "tests/test_tasks.py"
    assert mirror_of(PACKAGE / "__main__.py") == "tests/test_mcu_ray.py"  # COVERED_ELSEWHERE says where instead


@pytest.mark.parametrize("module", modules())
def test_every_module_has_its_test_module(module):
    if module in COVERED_ELSEWHERE:
        test_file, text = COVERED_ELSEWHERE[module]
        assert text in (REPO / test_file).read_text(encoding="utf-8"), f"{test_file} no longer tests {module}"
        return
    expected = mirror_of(REPO / module)
    assert (REPO / expected).is_file(), f"{module} has no test module: write {expected}"


def test_modules_import_helpers_not_each_other():
    offending = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            offending += [f"{path.relative_to(REPO)} imports {name}" for name in names
                          if name.startswith("tests.") and name != "tests.helpers"]
    assert offending == []


def test_the_readmes_layout_names_every_module():
    """The README's Layout section lists every module of the package (by its name, under its folder's line)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("## Layout"):]
    layout = layout[:layout.index("```", layout.index("```") + 3)]
    unnamed = [m for m in modules() if not m.endswith(("__init__.py", "__main__.py"))
               and f"{m.rpartition('/')[2][:-3]}" not in layout]
    assert unnamed == [], f"README's Layout section does not name {unnamed}"
