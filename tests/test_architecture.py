"""The package's shape, checked: the lesson at the top, named subpackages for the rest, layers
that hold and no import circles (import-linter's contracts in pyproject.toml), no sys.path surgery."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cnn_torch"
SUBPACKAGES = ("cli", "keras_rules", "machinery", "parity", "platform", "sources")


def test_the_layer_contracts_hold():
    """import-linter reads the contracts from pyproject.toml: the command line on top, the lesson in
    the middle, the machinery underneath, and no circles. Its own report is the failure message."""
    pytest.importorskip("importlinter", reason="import-linter is in the dev extra: pip install -e '.[dev]'")
    result = subprocess.run(
        [sys.executable, "-c",
         "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_a_learner_opening_the_package_sees_the_lesson_first():
    top = sorted(p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("__"))
    assert len(top) <= 12, f"the top of cnn_torch/ is for the lesson, at most about ten modules: {top}"
    docstring = ast.get_docstring(ast.parse((PACKAGE / "__init__.py").read_text()))
    for name in top:  # the package docstring says which to read and in what order
        assert f"``{name}.py``" in docstring, f"cnn_torch/__init__.py's docstring does not name {name}.py"
    for name in SUBPACKAGES:
        assert f"``{name}``" in docstring, f"cnn_torch/__init__.py's docstring does not name the {name} subpackage"


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_each_subpackage_says_what_it_holds_and_who_needs_it(name):
    init = PACKAGE / name / "__init__.py"
    docstring = ast.get_docstring(ast.parse(init.read_text()))
    assert docstring, f"{init} has no docstring"
    assert re.search(r"learner", docstring), f"{init}'s docstring does not say whether a learner needs it"
    modules = [p.stem for p in (PACKAGE / name).glob("*.py") if p.stem != "__init__"]
    for module in modules:  # and every module opens with a docstring of its own
        assert ast.get_docstring(ast.parse((PACKAGE / name / f"{module}.py").read_text())), f"{name}/{module}.py"


def test_no_module_is_named_like_one_of_the_standard_library():
    """``trace.py`` once shadowed the standard library's ``trace`` for any script run from its folder."""
    for path in PACKAGE.rglob("*.py"):
        assert path.stem not in sys.stdlib_module_names, f"{path.relative_to(ROOT)} shadows the standard library"


def test_no_file_puts_the_clone_on_sys_path():
    """The install (pip install -e .) makes cnn_torch importable; nothing edits sys.path by hand."""
    offenders = []
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "scripts").glob("*.py"), *(ROOT / "tests").glob("*.py")]:
        if path.name == Path(__file__).name:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"sys\.path\.(insert|append)|sys\.path\[:\]\s*=", line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}")
    assert not offenders, offenders


def test_the_install_does_not_put_the_clone_root_on_sys_path():
    """Only the package is installed (an editable install maps ``cnn_torch`` to the clone's files, so
    pdb and IDE breakpoints stop there); ``tests`` or ``scripts`` must not become importable."""
    result = subprocess.run(
        [sys.executable, "-c", "import cnn_torch, importlib.util, sys; print(cnn_torch.__file__);"
         "print(importlib.util.find_spec('scripts') is None and importlib.util.find_spec('tests') is None)"],
        cwd="/", capture_output=True, text=True, check=True,
    )  # fmt: skip
    path, nothing_else = result.stdout.split()
    assert Path(path).resolve() == PACKAGE / "__init__.py"
    assert nothing_else == "True", "the clone's root is on sys.path: scripts/ or tests/ import as packages"
