#!/usr/bin/env python3
"""Check the package's layout: no import cycle, no module over 600 lines, no function over 80.

    python scripts/check_layout.py            # checks tvcaption/ next to this script's folder
    python scripts/check_layout.py PACKAGE_DIR --max-module 600 --max-function 80

Reads the source with :mod:`ast` (nothing is imported). An import counts wherever it is
written, at module level or inside a function, except under ``if TYPE_CHECKING:`` (it never
runs). ``import a.b`` and ``from a.b import c`` are edges to ``a.b``, or to ``a.b.c`` when that
is a module; relative imports are resolved. A cycle is reported once, as the modules on it.
Prints one line per finding and exits 1 if there is any, 0 otherwise.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path


def module_names(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under ``package`` (``__init__`` is the package)."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement outside ``if TYPE_CHECKING:`` blocks, at any depth."""
    found: list[ast.Import | ast.ImportFrom] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking_only(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that module ``name`` (at ``path``) imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in _imports(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            parts = name.split(".") if is_package else name.split(".")[:-1]
            parts = parts[: len(parts) - (node.level - 1)]
            base = ".".join(parts + ([base] if base else []))
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            targets.add(sub if sub in known else base)
    return {t for t in targets if t in known and t != name}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:
        nonlocal counter
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(cycles)


def long_functions(path: Path, limit: int) -> list[tuple[str, int, int]]:
    """(qualified name, first line, length in lines) of every function longer than ``limit``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    stack: list[tuple[ast.AST, str]] = [(tree, "")]
    while stack:
        node, prefix = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                qualified = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    length = child.end_lineno - child.lineno + 1
                    if length > limit:
                        found.append((qualified, child.lineno, length))
                stack.append((child, qualified + "."))
            else:
                stack.append((child, prefix))
    return sorted(found, key=lambda f: f[1])


def check(package: Path, max_module: int = 600, max_function: int = 80) -> list[str]:
    modules = module_names(package)
    known = set(modules)
    graph = {name: imported_modules(name, path, known) for name, path in modules.items()}
    root = package.parent
    findings = [f"import cycle: {' <-> '.join(cycle)}" for cycle in find_cycles(graph)]
    for name, path in modules.items():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > max_module:
            findings.append(f"module over {max_module} lines: {path.relative_to(root)} ({lines})")
    for name, path in modules.items():
        for function, line, length in long_functions(path, max_function):
            findings.append(f"function over {max_function} lines: {path.relative_to(root)}:{line} {function} ({length})")
    return findings


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("package", nargs="?", type=Path, default=Path(__file__).resolve().parents[1] / "tvcaption")
    ap.add_argument("--max-module", type=int, default=600, help="most lines a module may have")
    ap.add_argument("--max-function", type=int, default=80, help="most lines a function may have")
    args = ap.parse_args(argv)
    findings = check(args.package.resolve(), args.max_module, args.max_function)
    for line in findings:
        print(line)
    if not findings:
        print(f"{args.package}: no import cycle, no module over {args.max_module} lines, "
              f"no function over {args.max_function} lines")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
