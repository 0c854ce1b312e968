"""The layering of docs/architecture.md, read off the source (issue 30): the domain packages never import the
training engine, the CLI or the experiments, and no two modules import each other, directly or in a circle.
Every import counts, at the top of a module or inside a function; imports inside functions are few."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import hiervq

SRC = Path(hiervq.__file__).resolve().parent
#: packages below the engine: they define tasks, models, priors, data and metrics, and never run training
LOWER = ("priors", "classify", "codec", "models", "quantize", "data", "metrics")
UPPER = ("hiervq.train", "hiervq.cli", "hiervq.experiments")


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The hiervq modules ``path`` imports (absolute names; ``from .x import y`` counts as module ``...x`` and,
    when ``...x.y`` is a module, that too)."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("hiervq")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("hiervq"):
                continue
            found.add(target)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if (SRC.parent / Path(*sub.split("."))).with_suffix(".py").is_file() or \
                        (SRC.parent / Path(*sub.split(".")) / "__init__.py").is_file():
                    found.add(sub)
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    return {name: {m for m in imports(path) if m in modules and m != name} for name, path in modules.items()}


def test_lower_layers_never_import_the_engine_the_cli_or_the_experiments():
    bad = [
        f"{name} imports {target}"
        for name, targets in graph().items()
        if name.split(".")[1:2] and name.split(".")[1] in LOWER
        for target in targets
        if target.startswith(UPPER)
    ]
    assert bad == []


def test_no_import_circles():
    edges = graph()
    # a package's __init__ importing its own modules is how a package exports them, not a circle
    edges = {a: {b for b in bs if not (a.startswith(b + ".") or (b.startswith(a + ".") and a.count(".") < b.count(".")))}
             for a, bs in edges.items()}
    cycles, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    # hiervq/__init__ is imported by every module's package import; its exports are not a layering edge
    cycles = [c for c in cycles if "hiervq" not in c]
    assert cycles == []


def test_imports_inside_functions_are_few():
    """Imports are at a module's top; the few inside functions (optional dependencies, a measured start-up cost)
    say why in a comment. The CLI has none: main imports the module of the command that runs."""
    inside = {}
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for stmt in ast.walk(node):
                    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                        inside.setdefault(module_name(path), []).append(stmt.lineno)
    assert sum(len(v) for v in inside.values()) <= 40, inside
    assert [m for m in inside if m.startswith("hiervq.cli")] == []


def test_help_imports_no_command_module():
    """``hiervq --help`` builds the parser without the library behind the commands (the start-up cost they save)."""
    code = (
        "import sys\n"
        "from hiervq.cli import build_parser\n"
        "build_parser().format_help()\n"
        "print(sorted(m for m in sys.modules if m.startswith(('hiervq.cli.commands', 'hiervq.train', 'yaml'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout
