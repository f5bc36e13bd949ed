"""The house rules that keep the stages apart: runtime is torch-free and imports no stage above it;
the evaluation package is torch-free too and stands on the runtime, never the reverse; neither
has an import cycle (deferred imports inside functions count); no runtime module is over 400
lines."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import REPO

HEAVY = ("torch", "transformers", "sklearn", "scipy", "pandas", "textual")


# The packages these rules cover: import name -> folder.
PACKAGES = {"crisislens.runtime": REPO / "runtime", "crisislens.evaluation": REPO / "evaluation"}
MAX_LINES = 400


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from package import submodule` imports the submodule
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _modules() -> dict[str, Path]:
    """Every module of the covered packages: dotted name -> file (a package is its __init__)."""
    out = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join((package, *parts))] = path
    return out


def _graph() -> dict[str, set[str]]:
    """module -> the covered modules it imports (at the top or inside a function)."""
    modules = _modules()
    return {name: {i for i in _imports(path) if i in modules and i != name} for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as [a, b, ..., a], or [] when there is none (depth-first search)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_the_runtime_and_evaluation_packages_have_no_import_cycle():
    graph = _graph()
    assert any(name.startswith("crisislens.runtime.backends.") for name in graph), "the graph misses subpackages"
    cycle = _cycle(graph)
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []


def test_no_runtime_module_is_over_400_lines():
    long = [f"{p.relative_to(REPO)}: {n} lines" for p in sorted((REPO / "runtime").rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES]
    assert not long, "\n".join(long)


def test_runtime_imports_no_stage_above_it_and_no_heavy_library():
    offenders = []
    for path in sorted((REPO / "runtime").rglob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            if name.startswith(("crisislens.evaluation", "crisislens.distill", "crisislens.export", "crisislens.tui")) \
                    or top in HEAVY:
                offenders.append(f"{path.relative_to(REPO)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_evaluation_is_torch_free_and_stands_only_on_the_runtime():
    offenders = []
    for path in sorted((REPO / "evaluation").rglob("*.py")):
        for name in _imports(path):
            if name.startswith(("crisislens.distill", "crisislens.export", "crisislens.tui")) \
                    or name.split(".")[0] in HEAVY:
                offenders.append(f"{path.relative_to(REPO)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_runtime_and_cli_load_without_torch_in_a_fresh_interpreter():
    # Building the full parser loads every stage's register() too: they must import lazily.
    code = (
        "import sys, importlib, pkgutil\n"
        "import crisislens.runtime as rt, crisislens.evaluation as ev\n"
        "for pkg in (rt, ev):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        if not m.name.endswith('__main__'):  # importing it would run the CLI\n"
        "            importlib.import_module(m.name)\n"
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
