"""A Markdown summary of a study, for a README, a pull request or a terminal."""

from __future__ import annotations

from effai.results import StudyResult, fmt_bytes, fmt_count, fmt_fraction, fmt_joules, fmt_ms


def _md(text) -> str:
    """Escape what would break a Markdown table cell or inject HTML."""
    s = str(text)
    for ch, rep in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|"), ("\n", " ")):
        s = s.replace(ch, rep)
    return s


def _ci(r) -> str:
    ci = r.accuracy_ci
    return "" if ci is None else f" ({ci.low * 100:.1f}-{ci.high * 100:.1f})"


def _lat_flags(r) -> str:
    lat = r.cost.latency
    flags = ([] if lat is None else lat.warnings()) + ([r.artifact.latency_caveat()] if r.artifact is not None
                                                        and r.artifact.latency_caveat() else [])
    return " ⚠ " + "; ".join(flags) if flags else ""


def _file(r) -> str:
    """The variant's file, linked, and what its numbers were measured on."""
    a = r.artifact
    if a is None:
        return _md(r.cost.size_format)
    on = "" if a.measured_on == "file" else " (numbers from the torch model)"
    return f"[{_md(a.file)}]({a.file}) {_md(a.format)}{on}"


def _ship(result: StudyResult) -> list[str]:
    """The winner's file in best/ and the command that rebuilds it."""
    best = result.best
    if not result.best_dir or best is None or best.artifact is None:
        return []
    a = best.artifact
    name = a.file.rsplit("/", 1)[-1]
    return [f"**Ship:** [best/{_md(name)}](best/{name}) ({fmt_bytes(a.bytes)}, {_md(a.runtime)}; "
            f"[manifest](best/manifest.json), sha256 `{a.sha256[:16]}…`). Rebuild it with:", "",
            "```", result.reproduce, "```", ""]


def render_markdown(result: StudyResult) -> str:
    """The summary as a string.

    >>> from effai.results import BaseModelInfo, StudyResult
    >>> print(render_markdown(StudyResult("t", BaseModelInfo("lenet5"))).splitlines()[0])
    # effai study: t
    """
    sel = result.selection
    lines = [
        f"# effai study: {_md(result.name)}",
        "",
        f"Base model `{_md(result.base.name)}` on `{_md(result.dataset.name)}`.",
        "",
        f"**Selected: {_md(sel.best)}** — {_md(sel.reason)}" if sel.best
        else f"**No variant meets the constraints.** {_md(sel.reason)}",
        "",
        *_ship(result),
        "| variant | accuracy (95% CI) | size | file | MACs | latency p50 | energy | harmed classes | verdict |",
        "|---|---:|---:|---|---:|---:|---:|---|---|",
    ]
    for r in result.variants:
        if not r.ok:
            lines.append(f"| {_md(r.name)} | failed | | | | | | | {_md(r.error or '')} |")
            continue
        v = sel.verdict(r.name)
        verdict = "selected" if r.name == sel.best else (f"{v.kind}: {v.reason}" if v else "")
        lines.append(
            f"| {_md(r.name)} | {fmt_fraction(r.accuracy)}{_ci(r)} | {fmt_bytes(r.size_bytes)} | {_file(r)} "
            f"| {fmt_count(r.macs)} | {fmt_ms(r.latency_ms)}{_md(_lat_flags(r))} | {fmt_joules(r.energy_j)} "
            f"| {_md(', '.join(r.flagged))} | {_md(verdict)} |"
        )
    e = result.environment
    lines += ["", f"Measured on {_md(e.cpu_model or e.processor)} ({e.cores or '?'} cores), Python {e.python}, "
              f"torch {e.torch}, ONNX Runtime {e.onnxruntime or '-'}, OpenVINO {e.openvino or '-'}."]
    lines += ["", "Reproduce:", "", "```", result.command, "```", ""]
    return "\n".join(lines)
