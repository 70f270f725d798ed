"""Reports of a study: one self-contained HTML file, Markdown, and JSON.

All three take an `effai.results.StudyResult`, so the same study can be reported from
Python, the CLI, a test or a search. The HTML opens offline: plots are inline SVG, sorting is
a few lines of inline JavaScript, and every user-supplied name is HTML-escaped.

>>> import tempfile, pathlib
>>> from effai.results import BaseModelInfo, DatasetInfo, StudyResult
>>> res = StudyResult("tiny", BaseModelInfo("m"), DatasetInfo("d", class_names=("<b>a</b>",)), command="effai study")
>>> out = write_html(res, pathlib.Path(tempfile.mkdtemp()) / "r.html")
>>> "&lt;b&gt;a&lt;/b&gt;" in out.read_text()
True
"""

from __future__ import annotations

import os
from pathlib import Path

from effai.fileio import write_atomic
from effai.results import StudyResult


def write_html(result: StudyResult, path: str | os.PathLike) -> Path:
    """Write the self-contained HTML report of `result` to `path` (atomically)."""
    from effai.report.html import render_html

    return write_atomic(path, render_html(result))


def write_markdown(result: StudyResult, path: str | os.PathLike) -> Path:
    """Write a Markdown summary (variants table, selection and reasons, reproduce command)."""
    from effai.report.markdown import render_markdown

    return write_atomic(path, render_markdown(result))


def write_json(result: StudyResult, path: str | os.PathLike) -> Path:
    """Write the whole result as JSON (the machine-readable report; `StudyResult.load` reads it)."""
    return result.save(path)


__all__ = ["write_html", "write_json", "write_markdown"]
