"""The shape of the core's code (issue 13): functions under 80 lines, no private name used across
modules, no import cycle.

The checks read the source with ``ast`` (nothing is imported). Each has an allow-list of today's
offenders in files that other parts of issue 13 are rewriting; an entry that no longer offends fails
too, so the lists only shrink and end empty.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).parents[1] / "rflocal_core"

#: Longest function body allowed, in lines from ``def`` to its last line.
MAX_FUNCTION_LINES = 80

#: Functions allowed over the limit, as "path::qualname" (none: keep it so).
LONG_FUNCTIONS_ALLOWED: set[str] = set()

#: Private names allowed to be imported from another module, as "importing path: module._name" (none).
PRIVATE_IMPORTS_ALLOWED: set[str] = set()

#: Import cycles allowed, each as the set of its modules (none).
IMPORT_CYCLES_ALLOWED: list[set[str]] = []


# --------------------------------------------------------------------------- the checks


def _modules(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of ``package`` (a package is its ``__init__``)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def long_functions(package: Path, limit: int = MAX_FUNCTION_LINES) -> dict[str, int]:
    """``"path::qualname"`` -> lines, for every function (or method) longer than ``limit`` lines."""
    found = {}

    def visit(node: ast.AST, prefix: str, rel: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                lines = child.end_lineno - child.lineno + 1
                if not isinstance(child, ast.ClassDef) and lines > limit:
                    found[f"{rel}::{name}"] = lines
                visit(child, f"{name}.", rel)
            else:
                visit(child, prefix, rel)

    for path in _modules(package).values():
        visit(ast.parse(path.read_text(encoding="utf-8")), "", path.relative_to(package).as_posix())
    return found


def _imported_module(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module name of ``from ... import`` in ``module``."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def private_imports(package: Path) -> set[str]:
    """``"path: module._name"`` for every private name of one module of ``package`` used in another.

    Both ``from module import _name`` and ``module._name`` (through ``import module [as m]``
    or ``from package import module``) count; dunder names do not.
    """
    modules = _modules(package)
    found = set()
    for module, path in modules.items():
        rel = path.relative_to(package).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases: dict[str, str] = {}  # local name -> module of the package
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in modules:
                        aliases[alias.asname or alias.name] = alias.name
            elif isinstance(node, ast.ImportFrom):
                source = _imported_module(module, path.name == "__init__.py", node)
                for alias in node.names:
                    if f"{source}.{alias.name}" in modules:
                        aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
                    elif source in modules and source != module and _is_private(alias.name):
                        found.add(f"{rel}: {source}.{alias.name}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _is_private(node.attr):
                owner = aliases.get(ast.unparse(node.value))
                if owner is not None and owner != module:
                    found.add(f"{rel}: {owner}.{node.attr}")
    return found


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports, anywhere in it (function-level imports included,
    ``if TYPE_CHECKING:`` blocks left out). ``from package import submodule`` is an edge to the
    submodule only."""
    modules = _modules(package)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        stack: list[ast.AST] = [ast.parse(path.read_text(encoding="utf-8"))]
        while stack:
            for node in ast.iter_child_nodes(stack.pop()):
                if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                    stack.extend(node.orelse)
                    continue
                stack.append(node)
                if isinstance(node, ast.Import):
                    graph[module].update(a.name for a in node.names if a.name in modules)
                elif isinstance(node, ast.ImportFrom):
                    source = _imported_module(module, path.name == "__init__.py", node)
                    subs = [f"{source}.{a.name}" for a in node.names if f"{source}.{a.name}" in modules]
                    graph[module].update(subs)
                    if source in modules and len(subs) < len(node.names):
                        graph[module].add(source)
        graph[module].discard(module)
    return graph


def import_cycles(package: Path) -> list[set[str]]:
    """The strongly connected components of the import graph with more than one module."""
    graph = import_graph(package)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []
    for root in graph:  # Tarjan's algorithm, iterative
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(component)
    return cycles


# --------------------------------------------------------------------------- the core


def test_no_function_in_the_core_is_over_80_lines():
    found = long_functions(CORE)
    new = {name: lines for name, lines in found.items() if name not in LONG_FUNCTIONS_ALLOWED}
    assert not new, f"functions over {MAX_FUNCTION_LINES} lines (split them along their phases): {new}"
    stale = LONG_FUNCTIONS_ALLOWED - set(found)
    assert not stale, f"no longer over {MAX_FUNCTION_LINES} lines: remove from LONG_FUNCTIONS_ALLOWED: {sorted(stale)}"


def test_no_module_of_the_core_uses_a_private_name_of_another():
    found = private_imports(CORE)
    new = found - PRIVATE_IMPORTS_ALLOWED
    assert not new, f"private names used across modules (make them public where shared): {sorted(new)}"
    stale = PRIVATE_IMPORTS_ALLOWED - found
    assert not stale, f"no longer imported: remove from PRIVATE_IMPORTS_ALLOWED: {sorted(stale)}"


def test_the_core_has_no_import_cycle():
    found = import_cycles(CORE)
    new = [sorted(c) for c in found if c not in IMPORT_CYCLES_ALLOWED]
    assert not new, f"import cycles: {new}"
    stale = [sorted(c) for c in IMPORT_CYCLES_ALLOWED if c not in found]
    assert not stale, f"no longer a cycle: remove from IMPORT_CYCLES_ALLOWED: {stale}"


# --------------------------------------------------------------------------- the checks find what they look for


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    """A small package with one of each offence, and look-alikes that are fine."""
    pkg = tmp_path / "toy"
    (pkg / "sub").mkdir(parents=True)
    body = "\n".join(f"    x{i} = {i}" for i in range(79))  # with its def: 80 lines
    method = "\n".join(f"        x{i} = {i}" for i in range(80))  # with its def: 81 lines
    (pkg / "__init__.py").write_text("__version__ = '1'\n", encoding="utf-8")
    (pkg / "a.py").write_text(
        f"def public():\n    return 1\n\n\ndef _helper():\n    return 2\n\n\ndef exactly_80():\n{body}\n\n\n"
        f"class Net:\n    def forward(self):\n{method}\n\n\n"
        "def lazy():\n    from toy.b import g\n    return g()\n",
        encoding="utf-8",
    )
    (pkg / "b.py").write_text(
        "from typing import TYPE_CHECKING\nfrom toy.a import _helper, public\nfrom toy import __version__\n"
        "import toy.sub.c as c\n\nif TYPE_CHECKING:\n    from toy.sub.c import T\n\n\n"
        "def g():\n    return c._secret() + _helper() + public()\n",
        encoding="utf-8",
    )
    (pkg / "sub" / "__init__.py").write_text("", encoding="utf-8")
    (pkg / "sub" / "c.py").write_text(
        "from ..a import _helper as h\nfrom toy import b\n\n\ndef _secret():\n    return h()\n\n\n"
        "class T:\n    pass\n",
        encoding="utf-8",
    )
    return pkg


def test_the_checks_find_long_functions_private_imports_and_cycles(toy: Path):
    assert long_functions(toy) == {"a.py::Net.forward": 81}  # exactly_80 is fine
    assert private_imports(toy) == {"b.py: toy.a._helper", "b.py: toy.sub.c._secret", "sub/c.py: toy.a._helper"}
    # a -> b (lazily, in a function) -> a; b -> c -> b; the TYPE_CHECKING import c -> ... is not an edge
    assert import_cycles(toy) == [{"toy.a", "toy.b", "toy.sub.c"}]
    graph = import_graph(toy)
    assert graph["toy.sub.c"] == {"toy.a", "toy.b"} and graph["toy.b"] == {"toy", "toy.a", "toy.sub.c"}
