"""No import cycles under src/effai, at module or function level: every `import` statement in
every module is read (ast), and the strongly connected components of that graph must be single
modules. A package importing its own submodules (its `__init__` re-exports) is not a cycle."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
KNOWN: set[tuple[str, str]] = set()  # no cycle is tolerated


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            found |= {base} | {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m in known and m != name and not m.startswith(name + ".")}


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in (SRC / "effai").rglob("*.py")}
    return {name: _imports(name, path, set(files)) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        u = stack.pop()
                        comp.append(u)
                        if u == v:
                            break
                    if len(comp) > 1:
                        out.append(tuple(sorted(comp)))
            elif w not in index:
                index[w] = low[w] = len(index)
                stack.append(w)
                work.append((w, iter(sorted(graph[w]))))
            elif w in stack:
                low[v] = min(low[v], index[w])
    return out


def test_the_checker_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [("a", "b", "c")]


def test_no_import_cycles_under_src():
    graph = import_graph()
    assert "effai.hardware.catalogue" in graph["effai.hardware.host"]  # the graph is really read
    assert set(cycles(graph)) <= KNOWN
