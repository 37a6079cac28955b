"""The package's structure: no import cycle between dcbulk's subpackages and top modules,
and imports at module top (a deferred import must say why, in a comment on its line or
the line above)."""
from __future__ import annotations

import ast
from pathlib import Path

import dcbulk

SRC = Path(dcbulk.__file__).parent


def _unit(module: str) -> str:
    """``dcbulk.bulk.job`` -> ``bulk``; ``dcbulk.cli`` -> ``cli``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, tree: ast.Module | None = None) -> list[tuple[ast.AST, str]]:
    """Every dcbulk module ``path`` imports, with the import statement."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8")) if tree is None else tree
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "dcbulk":
                out += [(node, f"{target}.{a.name}" if node.module is None else target)
                        for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(node, a.name) for a in node.names if a.name.split(".")[0] == "dcbulk"]
    return out


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        src = _unit(_module_name(path))
        if src == "dcbulk":  # the package root re-exports everything
            continue
        for _node, target in _imports(path):
            dst = _unit(target)
            if dst not in (src, "dcbulk"):
                graph.setdefault(src, set()).add(dst)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_between_subpackages():
    graph = _graph()
    assert "bulk" in graph and "read" in graph["bulk"]  # the walk sees the package
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_dcbulk_imports_are_at_module_top():
    """A dcbulk import inside a function is a circle dodged; none is left."""
    inside = []
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {id(n) for n in tree.body}
        for node, target in _imports(path, tree):
            if id(node) not in top and not _under_type_checking(tree, node):
                inside.append(f"{path.relative_to(SRC)}:{node.lineno} {target}")
    assert not inside, inside


def _under_type_checking(tree: ast.Module, node: ast.AST) -> bool:
    for stmt in tree.body:
        if isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test):
            if any(n is node for n in ast.walk(stmt)):
                return True
    return False
