"""The package's runtime import graph has no cycle.

Every ``import`` statement of every module counts, at the top of the module or inside a
function (a function-level import is a runtime import too, only a later one); those under
``if TYPE_CHECKING:`` do not run and do not count. An edge goes from a module to each module
of the package it names: ``from .ksmd import Ksmd`` names ``ksmbook.ksmd``, ``from .live
import ksmd`` names ``ksmbook.live.ksmd``. A package's ``__init__`` re-exporting its own
modules is the usual facade and is counted like any other import; the implicit import of a
package by its modules (Python runs ``ksmbook/live/__init__.py`` before
``ksmbook/live/ksmd.py``) is not a statement and is not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import ksmbook

PACKAGE = Path(ksmbook.__file__).resolve().parent


def _modules(root: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package's __init__)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts.pop()
        out[".".join(parts)] = (path, is_pkg)
    return out


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for stmt in node.body:
                skip.update(id(n) for n in ast.walk(stmt))
    return skip


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules its runtime import statements name."""
    modules = _modules(root)
    top = root.name
    graph: dict[str, set[str]] = {}
    for name, (path, is_pkg) in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        skip = _type_checking_nodes(tree)
        deps: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[:len(base) - node.level + 1]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                targets = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in modules else origin
                           for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:  # ``import a.b.c`` of a name in a.b
                    target = target.rpartition(".")[0]
                if target.split(".")[0] == top and target != name:
                    deps.add(target)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
    return found


def test_the_package_imports_without_a_cycle() -> None:
    graph = import_graph(PACKAGE)
    assert "ksmbook.live.ksmd" in graph and "ksmbook.experiment" in graph
    assert cycles(graph) == []


def test_the_layers_named_in_the_design_hold() -> None:
    """ksmd does not import the scenario language; the live harness imports neither the live
    ksmd nor the replay; the live ksmd does not import the replay."""
    graph = import_graph(PACKAGE)

    def reaches(src: str, dst: str) -> bool:
        seen, todo = set(), [src]
        while todo:
            v = todo.pop()
            if v == dst:
                return True
            if v not in seen:
                seen.add(v)
                todo.extend(graph[v])
        return False

    assert not reaches("ksmbook.ksmd", "ksmbook.scenario")
    assert not reaches("ksmbook.kernel", "ksmbook.scenario")
    assert not reaches("ksmbook.live.harness", "ksmbook.live.ksmd")
    assert not reaches("ksmbook.live.ksmd", "ksmbook.live.replay")
    assert reaches("ksmbook.experiment", "ksmbook.live.replay")


def test_a_function_level_cycle_is_found(tmp_path: Path) -> None:
    """The check sees an import inside a function, and not one under TYPE_CHECKING."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..a import x\n    return x\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    from .a import x\n")
    (pkg / "d.py").write_text("import pkg.c\n")
    graph = import_graph(pkg)
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.a"}
    assert graph["pkg.c"] == set() and graph["pkg.d"] == {"pkg.c"}
    assert cycles(graph) == [["pkg.a", "pkg.sub.b"]]
