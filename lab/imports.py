"""The lab's own import graph, read from source with ast (standard library only, nothing is imported).

The Space is assembled from the modules its app reaches (lab/demo/hub.py), and a test keeps the layers apart
and the graph free of circles (tests/test_layout.py) with it.
"""

import ast
from pathlib import Path

PACKAGE = "lab"


def module_name(path: Path, root: Path) -> str:
    """lab/demo/hub.py -> "lab.demo.hub"; lab/demo/__init__.py -> "lab.demo" (root holds the lab folder)."""
    parts = list(Path(path).resolve().relative_to(Path(root).resolve()).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_path(name: str, root: Path) -> Path | None:
    """The source file of a lab module, or None when there is none."""
    base = Path(root).joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_modules(path: Path, root: Path) -> set[str]:
    """The lab modules a file imports, at the top or inside functions (`from lab.x import y` may name a module y)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(Path(path).read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {n for n in names if n.split(".")[0] == PACKAGE and module_path(n, root) is not None}
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """{module: the lab modules it imports} for every module of the lab package under root."""
    return {module_name(p, root): imported_modules(p, root) - {module_name(p, root)}
            for p in sorted((Path(root) / PACKAGE).rglob("*.py"))}


def reachable(start: Path, root: Path) -> set[str]:
    """Every lab module a file needs: what it imports, what those import, and the packages that hold them."""
    todo, seen = list(imported_modules(start, root)), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}  # lab, lab.demo
        todo += list(parents | imported_modules(module_path(name, root), root))
    return seen
