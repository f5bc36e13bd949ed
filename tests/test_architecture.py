"""The house rules that keep the stages apart: runtime is torch-free and imports no stage above it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import REPO

HEAVY = ("torch", "transformers", "sklearn", "scipy", "pandas", "textual")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_runtime_imports_no_stage_above_it_and_no_heavy_library():
    offenders = []
    for path in sorted((REPO / "runtime").rglob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            if name.startswith(("crisislens.distill", "crisislens.export", "crisislens.tui")) or top in HEAVY:
                offenders.append(f"{path.relative_to(REPO)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_runtime_and_cli_load_without_torch_in_a_fresh_interpreter():
    # Building the full parser loads every stage's register() too: they must import lazily.
    code = (
        "import sys, importlib, pkgutil\n"
        "import crisislens.runtime as rt\n"
        "for m in pkgutil.iter_modules(rt.__path__):\n"
        "    if m.name != '__main__':  # importing it would run the CLI\n"
        "        importlib.import_module('crisislens.runtime.' + m.name)\n"
        "from crisislens.runtime.cli import build_parser\n"
        "build_parser()\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported: {out.stdout.strip()}"


def test_console_command_help_lists_the_stage_commands():
    from crisislens.runtime.cli import build_parser

    help_text = build_parser().format_help()
    for command in ("validate", "data", "eval"):
        assert command in help_text
