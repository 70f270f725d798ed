"""The search's HTML report: the study's report (`effai.report`) of the search's trials, with
the search's own Pareto section (a table and a plot, inline SVG) appended.

Both read the same `effai.results.VariantRecord` of each trial and print its numbers with the
same formatters (`effai.results.units`), so a trial's size, latency and energy read the same
in the study-style table and in the front table.
"""

from __future__ import annotations

import html
from pathlib import Path

from effai.results import (
    AXES,
    BaseModelInfo,
    DatasetInfo,
    Selection,
    StudyResult,
    VariantRecord,
    Verdict,
    fmt_count,
    fmt_fraction,
)
from effai.search.config import DIRECTIONS
from effai.search.objectives import budgets, objective


def _label(t) -> str:
    """A trial's name in the reports: its number and what was sampled."""
    return f"#{t.number} {t.name}"


def pareto_svg(result, x_key: str | None = None, width: int = 640, height: int = 400) -> str:
    """Scatter of every trial (grey), the feasible front (line) on accuracy vs. the first cost."""
    objs = result.objectives
    axis = AXES[x_key or (objs[1] if len(objs) > 1 else "size")]
    on = result.config.accuracy_on
    values = [(axis.of(t.record), objective(t.record, "accuracy", on), t) for t in result.trials]
    pts = [(x, y, t) for x, y, t in values if x is not None and y is not None]
    if not pts:
        return "<p>no finished trials to plot</p>"
    pad = 56
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 0.01)

    def sx(x):
        return pad + (x - x0) / (x1 - x0) * (width - 2 * pad)

    def sy(y):
        return height - pad - (y - y0) / (y1 - y0) * (height - 2 * pad)

    front = {t.number for t in result.front}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="Pareto front: accuracy vs {axis.name}" style="font:12px sans-serif">',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#333"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#333"/>',
             f'<text x="{width / 2}" y="{height - 16}" text-anchor="middle">{html.escape(axis.label)} '
             f'({DIRECTIONS[axis.name]})</text>',
             f'<text x="16" y="{height / 2}" transform="rotate(-90 16 {height / 2})" text-anchor="middle">'
             f'accuracy ({on})</text>']
    for v in (x0, x1):
        parts.append(f'<text x="{sx(v):.1f}" y="{height - pad + 16}" text-anchor="middle">{html.escape(axis.fmt(v))}</text>')
    for v in (y0, y1):
        parts.append(f'<text x="{pad - 6}" y="{sy(v):.1f}" text-anchor="end">{fmt_fraction(v, 1)}</text>')
    line = sorted((x, y) for x, y, t in pts if t.number in front)
    if len(line) > 1:
        d = " ".join(f"{sx(lx):.1f},{sy(ly):.1f}" for lx, ly in line)
        parts.append(f'<polyline points="{d}" fill="none" stroke="#c0392b" stroke-width="2"/>')
    for x, y, t in pts:
        on_front = t.number in front
        color = "#c0392b" if on_front else ("#bbb" if t.feasible else "#f5b041")
        parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="{5 if on_front else 3.5}" fill="{color}">'
                     f'<title>{html.escape(_label(t))}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def front_cells(r: VariantRecord) -> list[str]:
    """The front table's cells for one record: accuracies, then every cost with its unit."""
    return [fmt_fraction(r.val_accuracy), fmt_fraction(r.accuracy), fmt_count(r.cost.params),
            AXES["size"].fmt(r.size_bytes), AXES["macs"].fmt(r.macs),
            AXES["size"].fmt(r.cost.peak_activation_bytes), AXES["latency"].fmt(r.latency_ms),
            AXES["energy"].fmt(r.energy_j)]


FRONT_COLUMNS = ["val accuracy", "test accuracy", "params", "size", "MACs", "RAM", "latency p50", "energy"]


def front_table(result) -> str:
    """The Pareto front as an HTML table."""
    head = "".join(f"<th>{c}</th>" for c in ["#", "variant", *FRONT_COLUMNS])
    rows = []
    for t in result.front:
        cells = "".join(f"<td>{html.escape(c)}</td>" for c in front_cells(t.record))
        rows.append(f"<tr><td>{t.number}</td><td>{html.escape(t.name)}</td>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def section(result) -> str:
    """The 'Search: Pareto front' section (HTML fragment)."""
    r = result
    note = (f"{len(r.trials)} complete trials ({r.n_failed} failed, {r.n_retried} retried after an interruption); "
            f"objectives: {', '.join(f'{o} ({DIRECTIONS[o]})' for o in r.objectives)}; "
            f"sampler {r.config.sampler}, seed {r.config.seed}, storage {html.escape(r.storage)}.")
    return (f'<section id="search-pareto"><h2>Search: Pareto front</h2><p>{note}</p>'
            f"{pareto_svg(r)}{front_table(r)}</section>")


def as_study_result(result) -> StudyResult:
    """The search as a `StudyResult` for `effai.report`: one variant record per COMPLETE trial
    (named `#N name`), the study's fronts over them, and the search's front as the selection."""
    from effai.results import pareto_front
    from effai.search.trial import dataset as load

    cfg = result.config
    records = [t.record.replace(name=_label(t), description=("over budget: " + "; ".join(t.violations))
                                if t.violations else t.record.description) for t in result.trials]
    top = max(result.front, key=lambda t: (t.values["accuracy"], -t.number), default=None)
    reason = (f"the most {cfg.accuracy_on}-accurate variant on the search's Pareto front "
              f"({fmt_fraction(top.values['accuracy'])} {cfg.accuracy_on}); every front variant is a valid trade-off"
              if top else "no feasible trial: no variant met the budgets")
    on_front = {t.number for t in result.front}
    verdicts = tuple(_verdict(t, on_front) for t in result.trials if top is None or t.number != top.number)
    ds = load(cfg.dataset, cfg.seed)  # cached: the search loaded it before its first trial
    return StudyResult(
        name=f"search {cfg.study_name}",
        base=BaseModelInfo(", ".join(map(str, cfg.space.family.values())), source="sampled by the search"),
        dataset=DatasetInfo(ds.name, tuple(ds.class_names), len(ds.test), tuple(ds.input_shape)),
        variants=tuple(records), reference=None,
        pareto={axis: tuple(r.name for r in pareto_front(records, [axis])) for axis in AXES},
        constraints=budgets(cfg),
        selection=Selection(_label(top) if top else None, reason, tuple(_label(t) for t in result.front), verdicts),
        config=cfg.model_dump(),
        command=f"effai search --config ... --out {result.out}",
        notes=(f"The search optimised {cfg.accuracy_on} accuracy over {', '.join(result.objectives)}; "
               "the table and plots show test accuracy.",
               f"{len(result.trials)} complete trials, {result.n_failed} failed, {result.n_retried} retried "
               f"after an interruption; sampler {cfg.sampler}, seed {cfg.seed}."),
        latency_note="per trial, one image, as each cell's tooltip says",
        energy_note="measured or estimated as each cell's tooltip says",
    )


def _verdict(t, on_front: set[int]) -> Verdict:
    name = _label(t)
    if t.same_as is not None:
        return Verdict(name, "repeat", f"the same variant as #{t.same_as} (measurement reused)")
    if t.violations:
        return Verdict(name, "infeasible", "over budget: " + "; ".join(t.violations))
    if t.number in on_front:
        return Verdict(name, "pareto", "on the search's Pareto front")
    return Verdict(name, "dominated", "dominated in the search")


def write_report(result, path: str | Path) -> Path:
    """Write the study's HTML report of the search (`effai.report.write_html`) with the
    search's Pareto section appended."""
    from effai.fileio import write_atomic
    from effai.report.html import render_html

    page = render_html(as_study_result(result))
    return write_atomic(path, page.replace("</body>", section(result) + "</body>", 1))
