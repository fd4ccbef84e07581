"""Every module of spacy_elmo imports on its own, and no modules import each other in a circle."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "spacy_elmo"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = sorted(module_name(p) for p in PACKAGE.rglob("*.py") if p.name != "__main__.py")


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports anywhere in it (also inside functions)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            # "from p import m" names the module p.m; "from p.m import f" names p.m
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # "import p.m.f" names p.m
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = set(MODULES)
    return {module_name(p): imported_modules(p, modules) for p in PACKAGE.rglob("*.py") if p.name != "__main__.py"}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of explicit module imports (the implicit import of a module's parent packages aside)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def edges(module: str) -> set[str]:
        return graph[module]

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        stack.append(module)
        for target in sorted(edges(module)):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)) is not None:
                return cycle
        stack.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)) is not None:
            return cycle
    return None


def test_the_scan_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"p": {"p.x"}, "p.x": {"p.y"}, "p.y": set()}) is None
    graph = import_graph()
    assert "spacy_elmo.bilm.model" in graph["spacy_elmo.layers.bilm_model"]


def test_no_import_cycle() -> None:
    assert find_cycle(import_graph()) is None


def test_command_modules_do_not_import_each_other() -> None:
    graph = import_graph()
    commands = [m for m in graph if m.startswith("spacy_elmo.cli.")]
    assert sorted(commands) == ["spacy_elmo.cli.embed", "spacy_elmo.cli.models", "spacy_elmo.cli.pretrain"]
    for module in commands:
        assert not {t for t in graph[module] if t == "spacy_elmo.cli" or t.startswith("spacy_elmo.cli.")}, module


def test_the_pytorch_model_knows_nothing_of_spacy() -> None:
    graph = import_graph()
    for module, targets in graph.items():
        if module.startswith("spacy_elmo.bilm"):
            assert all(t.startswith("spacy_elmo.bilm") or t == "spacy_elmo.errors" for t in targets), module
    for path in (PACKAGE / "bilm").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {n for n in names if n.split(".")[0] in ("spacy", "thinc")}, path


def test_every_module_imports() -> None:
    code = "import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:]]"
    result = subprocess.run(
        [sys.executable, "-c", code, *MODULES], cwd=PACKAGE.parent, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr


def test_import_spacy_elmo_does_not_import_spacy() -> None:
    code = "import sys, spacy_elmo; print('spacy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
    assert importlib.import_module("spacy_elmo").__version__
