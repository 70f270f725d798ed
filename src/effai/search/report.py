"""The search's HTML report: the Pareto front as a table and a plot, self-contained (inline SVG).

When the study's report (`effai.report`) offers a Pareto section, the search uses it;
otherwise this small page stands in, with the same table and plot.
"""

from __future__ import annotations

import html
from pathlib import Path

from effai.search.config import DIRECTIONS, UNITS


def _fmt(key: str, v) -> str:
    if v is None:
        return "-"
    if key in ("accuracy", "val_accuracy", "test_accuracy"):
        return f"{100 * v:.2f}%"
    if key in ("size", "ram", "size_fp32"):
        return f"{v / 1000:.1f} kB" if v >= 1000 else f"{v:.0f} B"
    if key == "macs":
        return f"{v / 1e6:.3f} M" if v >= 1e5 else f"{v:,.0f}"
    if key == "latency":
        return f"{v:.3f} ms"
    if key == "energy":
        return f"{v * 1e6:.3f} µJ"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def pareto_svg(result, x_key: str | None = None, width: int = 640, height: int = 400) -> str:
    """Scatter of every trial (grey), the feasible front (line) on accuracy vs. the first cost."""
    objs = result.objectives
    x_key = x_key or (objs[1] if len(objs) > 1 else "size")
    pts = [(t.metrics.get(x_key), t.values["accuracy"], t) for t in result.trials if t.metrics.get(x_key) is not None]
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
             f'aria-label="Pareto front: accuracy vs {x_key}" style="font:12px sans-serif">',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#333"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#333"/>',
             f'<text x="{width / 2}" y="{height - 16}" text-anchor="middle">{x_key} ({DIRECTIONS.get(x_key, "")}) '
             f'{UNITS.get(x_key, "")}</text>',
             f'<text x="16" y="{height / 2}" transform="rotate(-90 16 {height / 2})" text-anchor="middle">'
             f'accuracy ({result.config.accuracy_on})</text>']
    for v, y in ((x0, height - pad + 16), (x1, height - pad + 16)):
        parts.append(f'<text x="{sx(v):.1f}" y="{y}" text-anchor="middle">{html.escape(_fmt(x_key, v))}</text>')
    for v in (y0, y1):
        parts.append(f'<text x="{pad - 6}" y="{sy(v):.1f}" text-anchor="end">{100 * v:.1f}%</text>')
    line = sorted((x, y) for x, y, t in pts if t.number in front)
    if len(line) > 1:
        d = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in line)
        parts.append(f'<polyline points="{d}" fill="none" stroke="#c0392b" stroke-width="2"/>')
    for x, y, t in pts:
        on = t.number in front
        color = "#c0392b" if on else ("#bbb" if t.feasible else "#f5b041")
        parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="{5 if on else 3.5}" fill="{color}">'
                     f'<title>#{t.number} {html.escape(t.name)}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def front_table(result) -> str:
    """The Pareto front as an HTML table."""
    cols = ["accuracy", "test_accuracy", "size", "macs", "params", "ram", "latency", "energy"]
    head = "".join(f"<th>{c}</th>" for c in ["#", "variant", *cols])
    rows = []
    for t in result.front:
        cells = "".join(f"<td>{html.escape(_fmt(c, t.metrics.get(c, t.values.get(c))))}</td>" for c in cols)
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


def study_dict(result) -> dict:
    """The search as a study-shaped result for `effai.report`: one variant record per COMPLETE trial.

    Records carry the test accuracy (what the study's report plots); the Pareto fronts are the
    study's own (`effai.study.pareto.pareto_front`) over those records, per cost axis.
    """
    from effai.study.pareto import AXES, pareto_front

    cfg = result.config
    records = []
    for t in result.trials:
        m = t.metrics
        records.append({
            "name": f"#{t.number} {t.name}", "status": "ok", "family": t.variant.get("family", ""),
            "description": ("over budget: " + "; ".join(t.violations)) if t.violations else "",
            "accuracy": m.get("test_accuracy"), "size_bytes": m.get("size"), "params": m.get("params"),
            "macs": m.get("macs"), "latency_ms": m.get("latency"), "runtime": m.get("latency_method") or "",
            "energy_j": m.get("energy"), "energy": {"method": m.get("energy_method") or ""},
            "size_format": f"{m.get('mean_bits', 32):g}-bit weights",
        })
    pareto = {axis: pareto_front(records, axis) for axis in AXES}
    on_front = {f"#{t.number} {t.name}" for t in result.front}
    top = max(result.front, key=lambda t: (t.values["accuracy"], -t.number), default=None)
    best = f"#{top.number} {top.name}" if top else None
    reason = (f"the most {cfg.accuracy_on}-accurate variant on the search's Pareto front "
              f"({top.values['accuracy']:.2%} {cfg.accuracy_on}); every front variant is a valid trade-off"
              if top else "no feasible trial: no variant met the budgets")
    dataset = {"name": cfg.dataset, "class_names": [], "n_test": 0}
    try:  # names and test-set size for the header (cheap for the built-in data sets)
        from effai.search.trial import dataset as load

        ds = load(cfg.dataset, cfg.seed)
        dataset = {"name": ds.name, "class_names": list(ds.class_names), "n_test": len(ds.test)}
    except Exception:
        pass
    return {
        "name": f"search {cfg.study_name}", "model": ", ".join(map(str, cfg.space.family.values())),
        "dataset": dataset, "variants": records, "pareto": pareto,
        "selection": {"best": best, "reason": reason, "rejected": [
            _verdict(r["name"], t, on_front) for r, t in zip(records, result.trials, strict=True) if r["name"] != best]},
        "notes": [f"The search optimised {cfg.accuracy_on} accuracy over {', '.join(result.objectives)}; "
                  "the table and plots show test accuracy.",
                  f"{len(result.trials)} complete trials, {result.n_failed} failed, {result.n_retried} retried "
                  f"after an interruption; sampler {cfg.sampler}, seed {cfg.seed}."],
        "command": f"effai search --config ... --out {result.out}",
        "config": cfg.model_dump(),
    }


def _verdict(name: str, t, on_front: set) -> dict:
    if t.same_as is not None:
        return {"name": name, "kind": "repeat", "reason": f"the same variant as #{t.same_as} (measurement reused)"}
    if t.violations:
        return {"name": name, "kind": "infeasible", "reason": "over budget: " + "; ".join(t.violations)}
    if name in on_front:
        return {"name": name, "kind": "pareto", "reason": "on the search's Pareto front"}
    return {"name": name, "kind": "dominated", "reason": "dominated in the search"}


def write_report(result, path: str | Path) -> Path:
    """Write the report with the study's HTML report (`effai.report.write_html`) and the search's
    Pareto section appended; this module's plain page stands in if the study's report fails."""
    from effai.fileio import write_atomic

    body = section(result)
    try:
        from effai.report import write_html

        path = write_html(study_dict(result), path)
        page = Path(path).read_text(encoding="utf-8")
        page = page.replace("</body>", body + "</body>", 1) if "</body>" in page else page + body
        return write_atomic(path, page)
    except ImportError:
        pass
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>effai search</title>"
            "<style>body{font:14px sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:nth-child(2){text-align:left}"
            "</style></head><body><h1>effai search</h1>" + body + "</body></html>")
    return write_atomic(path, page)
