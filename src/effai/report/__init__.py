"""Reports of a study: one self-contained HTML file, Markdown, and JSON.

All three take a `StudyResult` (or its dict) so the same study can be reported from Python,
the CLI or a test. The HTML opens offline: plots are inline SVG, sorting is a few lines of
inline JavaScript, and every user-supplied name is HTML-escaped.

>>> import tempfile, pathlib
>>> res = {"name": "tiny", "model": "m", "dataset": {"name": "d", "class_names": ["<b>a</b>"], "n_test": 0},
...        "variants": [], "command": "effai study"}
>>> out = write_html(res, pathlib.Path(tempfile.mkdtemp()) / "r.html")
>>> "&lt;b&gt;a&lt;/b&gt;" in out.read_text()
True
"""

from __future__ import annotations

import os
from pathlib import Path

from effai.fileio import write_atomic
from effai.fileio import write_json as _write_json


def _as_dict(result) -> dict:
    return result if isinstance(result, dict) else result.to_dict()


def write_html(result, path: str | os.PathLike) -> Path:
    """Write the self-contained HTML report of `result` to `path` (atomically)."""
    from effai.report.html import render_html

    return write_atomic(path, render_html(_as_dict(result)))


def write_markdown(result, path: str | os.PathLike) -> Path:
    """Write a Markdown summary (variants table, selection and reasons, reproduce command)."""
    from effai.report.markdown import render_markdown

    return write_atomic(path, render_markdown(_as_dict(result)))


def write_json(result, path: str | os.PathLike) -> Path:
    """Write the whole result as JSON (the machine-readable report)."""
    return _write_json(path, _as_dict(result))


__all__ = ["write_html", "write_json", "write_markdown"]
