"""The layers point down: the shared records (`effai.results`) import no capability, and the
report and the search never import the study (they share through the records). The import
graph (module- and function-level imports, read with ast) is tests/test_imports.py's, which
also checks that it has no cycles."""

from __future__ import annotations

from test_imports import import_graph


def _deps(graph: dict[str, set[str]], package: str) -> set[str]:
    """Every module that `package` or one of its modules imports."""
    return {d for m, ds in graph.items() if m == package or m.startswith(package + ".") for d in ds}


def test_report_and_search_do_not_import_the_study():
    graph = import_graph()
    for upper in ("effai.report", "effai.search"):
        study = sorted(d for d in _deps(graph, upper) if d == "effai.study" or d.startswith("effai.study."))
        assert not study, f"{upper} imports the study's internals {study}; share through effai.results"


def test_the_records_are_the_bottom_layer():
    below = {d for d in _deps(import_graph(), "effai.results") if not d.startswith("effai.results")}
    assert below <= {"effai.errors", "effai.fileio"}, f"effai.results imports {sorted(below)}"


def test_the_graph_sees_what_these_checks_rely_on():
    """The checks above are only as good as the graph: it holds function-level imports, and the
    study does import the report (so a report -> study edge would be a cycle too)."""
    graph = import_graph()
    assert "effai.report" in graph["effai.study.runner"]  # `from effai import report` inside _write
    assert "effai.results" in graph["effai.search.objectives"]
    assert "effai.results" in _deps(graph, "effai.report")
