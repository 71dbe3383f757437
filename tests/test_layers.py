"""The arrows of DESIGN.md's layer table hold, and no module imports itself through others.

Every import of every module of the product (at the top of a file or inside a function, relative or
absolute) is read with :mod:`ast`, without importing anything. An import of another layer that the
table does not allow, or a loop of imports between modules, fails the test with the modules named.
Imports under ``if TYPE_CHECKING:`` never run, so they are left out: a type hint may name a module
that imports this one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "instrumentd"

# layer -> the layers it may import (DESIGN.md, "Layout"); a layer always imports itself
ALLOWED: dict[str, set[str]] = {
    "pipeline": set(),
    "model": {"pipeline"},
    "daemon": {"pipeline", "model"},
    "clients": {"daemon", "model", "pipeline"},
    "training": {"pipeline", "model"},
}
# module prefix -> further layers it may import, and why
EXCEPTIONS: dict[str, set[str]] = {
    # the benchmarks of the training steps time training's own code and render its synthetic music
    "clients.bench": {"training"},
    # the one home of the command line runs training's commands too (synth, prepare, train, evaluate...)
    "clients.commands": {"training"},
}


def modules(root: Path, package: str, layers: set[str]) -> dict[str, Path]:
    """Dotted name (``instrumentd.daemon.server``) -> file, for the package's own modules and its layers'."""
    found = {f"{package}.{p.stem}" if p.stem != "__init__" else package: p for p in root.glob("*.py")}
    for layer in layers:
        for path in sorted((root / layer).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join((package, *parts[:-1])) if parts[-1] == "__init__" else ".".join((package, *parts))
            found[name] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The known modules that ``name`` (the module in ``path``) imports, anywhere in its code."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in _run_time_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from pkg import mod` imports the module pkg.mod; `from mod import name`, the module mod
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` where a.b is the last module we know
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def _run_time_nodes(tree: ast.AST):
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:``."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                todo.extend(child.orelse)
            else:
                todo.append(child)


def layer_of(module: str, package: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED) else ""


def allowed(module: str, target_layer: str, package: str) -> bool:
    layer = layer_of(module, package)
    if not layer or target_layer in (layer, ""):
        return True  # the package's own top modules (the command's entry points) may import every layer
    extra = set()
    for prefix, layers in EXCEPTIONS.items():
        dotted = f"{package}.{prefix}"
        if module == dotted or module.startswith(dotted + "."):
            extra |= layers
    return target_layer in ALLOWED[layer] | extra


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted, in sorted order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def check(root: Path, package: str = PACKAGE) -> list[str]:
    """Every arrow against :data:`ALLOWED` and every import loop of the package in ``root``, one line each."""
    known = modules(root, package, set(ALLOWED))
    graph = {name: imports(name, path, known) for name, path in known.items()}
    problems = []
    for name in sorted(graph):
        for target in sorted(graph[name]):
            if not allowed(name, layer_of(target, package), package):
                problems.append(f"arrow: {name} imports {target} ({layer_of(name, package)} may import "
                                f"{', '.join(sorted(ALLOWED[layer_of(name, package)])) or 'no other layer'})")
    for loop in cycles(graph):
        problems.append(f"loop: {' <-> '.join(loop)}")
    return problems


def test_the_product_keeps_the_layer_table_and_has_no_import_loop():
    assert check(ROOT) == []


def _write(path: Path, text: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_planted_bad_arrow_and_a_loop_are_both_reported(tmp_path):
    pkg = tmp_path / "pkg"
    _write(pkg / "__init__.py")
    for layer in ALLOWED:
        _write(pkg / layer / "__init__.py")
    _write(pkg / "model" / "net.py", "from pkg.pipeline import mel\n")  # allowed
    _write(pkg / "pipeline" / "mel.py", "def f():\n    from pkg.daemon.server import Server\n")  # lazy, upward
    _write(pkg / "daemon" / "server.py", "from . import worker\n")
    _write(pkg / "daemon" / "worker.py", "import pkg.daemon.server\nfrom .events import encode\n")
    # events -> worker for type hints only: no loop
    _write(pkg / "daemon" / "events.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .worker import W\n")
    _write(pkg / "training" / "bench.py", "from ..daemon import worker\n")  # training never imports daemon
    assert check(pkg, "pkg") == [
        "arrow: pkg.pipeline.mel imports pkg.daemon.server (pipeline may import no other layer)",
        "arrow: pkg.training.bench imports pkg.daemon.worker (training may import model, pipeline)",
        "loop: pkg.daemon.server <-> pkg.daemon.worker",
    ]


@pytest.mark.parametrize("module, target, ok", [
    ("instrumentd.clients.bench.train", "training", True),
    ("instrumentd.clients.tail", "training", False),
    ("instrumentd.model.fast", "pipeline", True),
    ("instrumentd.model.fast", "daemon", False),
    ("instrumentd.__main__", "clients", True),
])
def test_the_table_and_its_one_exception(module, target, ok):
    assert allowed(module, target, PACKAGE) is ok
