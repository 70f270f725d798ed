"""The shape of the code: effai's import graph (module-level and function-level imports, read
with ast) has no cycles, and the layers point down: the shared records (`effai.results`)
import no capability, and the report and the search never import the study."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Cycles that issue 15's other half (the registry branch) removes; delete each line when it lands.
KNOWN_CYCLES: set[frozenset[str]] = {
    frozenset({"effai.hardware.catalogue", "effai.hardware.host"}),
    frozenset({"effai.prune.latency", "effai.prune.structured"}),
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "effai").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The effai module `name` refers to: itself, or the package or module that defines it."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """module -> the modules it imports (anywhere in its file), for effai's own modules."""
    modules = _modules()
    g: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names]  # a submodule, or a name in `base`
            else:
                continue
            for t in targets:
                dep = _resolve(t, modules) if t.startswith("effai") else None
                # `import effai` loads subpackages lazily; a package importing its own submodule
                # (to re-export it) is not a dependency back.
                if dep and dep != mod and dep != "effai" and not dep.startswith(mod + "."):
                    g[mod].add(dep)
    return g


def _reachable(g: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), list(g[start])
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(g[m])
    return seen


def cycles(g: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected groups of modules (each module in one reaches every other)."""
    reach = {m: _reachable(g, m) for m in g}
    return {frozenset({m} | {o for o in reach[m] if m in reach[o]}) for m in g if m in reach[m]}


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {frozenset("abc")}


def test_no_import_cycles():
    found = cycles(import_graph())
    assert found - KNOWN_CYCLES == set(), sorted(sorted(c) for c in found - KNOWN_CYCLES)


def test_layers_point_down():
    g = import_graph()

    def deps(prefix: str) -> set[str]:
        return {b for a, bs in g.items() if a == prefix or a.startswith(prefix + ".") for b in bs}

    for upper in ("effai.report", "effai.search"):
        study = sorted(d for d in deps(upper) if d == "effai.study" or d.startswith("effai.study."))
        assert not study, f"{upper} imports the study's internals {study}; share through effai.results"
    allowed = {"effai.errors", "effai.fileio"}
    below = {d for d in deps("effai.results") if not d.startswith("effai.results")}
    assert below <= allowed, f"effai.results must stay the bottom layer; it imports {sorted(below - allowed)}"


def test_the_graph_sees_function_level_imports():
    """The checks above are only as good as the graph: it holds imports made inside functions."""
    g = import_graph()
    assert "effai.report" in g["effai.study.runner"]  # `from effai import report` inside _write
    assert "effai.search.backends" in g["effai.search.run"]  # inside run()
