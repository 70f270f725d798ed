"""Griffe extension for the API reference: fence doctest examples as code.

effai's docstrings hold runnable `>>>` examples (scikit-learn style) outside any "Examples:"
section. Rendered as plain Markdown, `[...]` in them reads as a link reference; wrapping each
run of `>>>` / `...` lines and their expected output in a ```pycon fence shows them as code.
"""

from __future__ import annotations

import griffe


def fence_doctests(text: str) -> str:
    """Wrap each doctest run (a `>>>` line up to the next blank line) in a ```pycon fence;
    lines inside an existing ``` fence are left alone."""
    out: list[str] = []
    in_fence = in_doctest = False
    indent = ""
    for line in text.splitlines():
        stripped = line.strip()
        if in_doctest and not stripped:
            out.append(f"{indent}```")
            in_doctest = False
        if not in_doctest and stripped.startswith("```"):
            in_fence = not in_fence
        elif not in_fence and not in_doctest and (stripped.startswith(">>> ") or stripped == ">>>"):
            indent = line[: len(line) - len(line.lstrip())]
            if out and out[-1].strip():
                out.append("")
            out.append(f"{indent}```pycon")
            in_doctest = True
        out.append(line)
    if in_doctest:
        out.append(f"{indent}```")
    return "\n".join(out)


class DoctestFences(griffe.Extension):
    """Rewrite every docstring's doctest runs into fenced code blocks."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:  # noqa: ARG002
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)
