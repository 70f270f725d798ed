"""The self-contained HTML report: a Jinja2 template with autoescape on, inline SVG plots
and a few lines of inline JavaScript for sorting. It opens offline; nothing is fetched."""

from __future__ import annotations

import json
import time

from effai.report import plots
from effai.study.pareto import AXES
from effai.study.units import fmt_bytes, fmt_count, fmt_ms


def render_html(result: dict) -> str:
    """The report as one HTML string (see `effai.report.write_html`)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("effai.report", "templates"),
        autoescape=True,  # every user string (model, class, slice, layer names) becomes text
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("report.html.j2").render(**context(result))


def context(result: dict) -> dict:
    """Everything the template shows, formatted; the template only lays it out."""
    from effai import __version__

    records = result.get("variants", [])
    ok = [r for r in records if r.get("status") == "ok"]
    selection = result.get("selection") or {"best": None, "reason": "no selection was made", "rejected": []}
    pareto = result.get("pareto") or {}
    dataset = result.get("dataset") or {"name": "?", "class_names": [], "n_test": 0}
    fit_targets = sorted({t for r in ok for t in (r.get("targets") or {})})
    return {
        "title": result.get("name", "study"),
        "model": result.get("model", "?"),
        "dataset": dataset,
        "version": __version__,
        "written": time.strftime("%Y-%m-%d %H:%M"),
        "selection": selection,
        "constraints_text": _constraints_text(result.get("constraints") or {}),
        "notes": result.get("notes", []),
        "rows": _rows(records, selection, result.get("base")),
        "latency_note": result.get("latency_note", "see each cell's tooltip for the runtime"),
        "energy_note": result.get("energy_note", "measured or estimated as each cell's tooltip says"),
        "pareto_plots": _pareto_plots(ok, pareto, selection.get("best")),
        "harm_rows": [_harm_row(r, dataset["class_names"]) for r in ok if r.get("harm")],
        "slice_names": _slice_names(ok),
        "slice_rows": [_slice_row(r, _slice_names(ok)) for r in ok if (r.get("harm") or {}).get("slices")],
        "robustness_svg": _prefixed(plots.robustness_svg(ok), "rob-"),
        "fit_targets": fit_targets,
        "fit_rows": [_fit_row(r, fit_targets) for r in ok],
        "fit_note": result.get("fit_note", "Memory fit against each target's flash and RAM; hover a cell for details."),
        "command": result.get("command", ""),
        "config_json": json.dumps(result.get("config", {}), indent=2, default=str),
        "environment_json": json.dumps(result.get("environment", {}), indent=2, default=str),
    }


def _constraints_text(c: dict) -> str:
    parts = []
    if c.get("max_size_bytes"):
        parts.append(f"size ≤ {fmt_bytes(c['max_size_bytes'])}")
    if c.get("max_latency_ms"):
        parts.append(f"latency ≤ {fmt_ms(c['max_latency_ms'])}")
    if c.get("min_accuracy"):
        parts.append(f"accuracy ≥ {c['min_accuracy']:.2%}")
    if c.get("target"):
        parts.append(f"fits {c['target']}")
    return ", ".join(parts) or "none (the most accurate variant wins)"


def _pct(x, digits=2) -> str:
    return "-" if x is None else f"{x * 100:.{digits}f}%"


def _v(x) -> str:
    """A sort key for data-v: numbers as is, missing values sort last (as text)."""
    return "" if x is None else repr(float(x))


def _rows(records: list[dict], selection: dict, base: str | None) -> list[dict]:
    verdicts = {x["name"]: x for x in selection.get("rejected", [])}
    base_acc = next((r.get("accuracy") for r in records if r["name"] == base), None)
    rows = []
    for r in records:
        ev = r.get("evaluation") or {}
        rob = [a for curve in (ev.get("robustness") or {}).values() for a in curve]
        mca = sum(rob) / len(rob) if rob else None
        acc = r.get("accuracy")
        delta = None if acc is None or base_acc is None else (acc - base_acc) * 100
        energy = r.get("energy") or {}
        if r["name"] == selection.get("best"):
            kind, verdict = "selected", selection.get("reason", "")
        elif r["name"] in verdicts:
            kind, verdict = verdicts[r["name"]]["kind"], verdicts[r["name"]]["reason"]
        else:
            kind, verdict = ("failed", r.get("error", "")) if r.get("status") != "ok" else ("", "")
        rows.append({
            "name": r["name"], "family": r.get("family", ""), "description": r.get("description", ""),
            "css": "selected" if kind == "selected" else ("failed" if r.get("status") != "ok" else ""),
            "acc": _pct(acc), "acc_v": _v(acc),
            "delta": "-" if delta is None else f"{delta:+.2f}", "delta_v": _v(delta),
            "top5": _pct((ev.get("topk") or {}).get("top5")), "top5_v": _v((ev.get("topk") or {}).get("top5")),
            "ece": "-" if ev.get("ece") is None else f"{ev['ece']:.3f}", "ece_v": _v(ev.get("ece")),
            "mca": _pct(mca, 1), "mca_v": _v(mca),
            "size": fmt_bytes(r.get("size_bytes")), "size_v": _v(r.get("size_bytes")),
            "size_format": r.get("size_format", ""),
            "params": fmt_count(r.get("params")), "params_v": _v(r.get("params")),
            "macs": fmt_count(r.get("macs")), "macs_v": _v(r.get("macs")),
            "lat": fmt_ms(r.get("latency_ms")), "lat_v": _v(r.get("latency_ms")), "runtime": r.get("runtime", ""),
            "energy": AXES["energy"][1](r.get("energy_j")), "energy_v": _v(r.get("energy_j")),
            "energy_method": f"{energy.get('method', '')}: {energy.get('model', '')}".strip(": "),
            "flagged": (r.get("harm") or {}).get("flagged", []),
            "kind": kind, "verdict": verdict,
        })
    return rows


def _pareto_plots(ok: list[dict], pareto: dict, best: str | None) -> list[dict]:
    out = []
    for axis in AXES:
        svg = plots.pareto_svg(ok, axis, pareto.get(axis, []), best)
        if svg:
            out.append({"axis": axis, "svg": plots.strip_ids(svg, f"p{axis}-"), "front": pareto.get(axis, [])})
    return out


def _prefixed(svg: str | None, prefix: str) -> str | None:
    return plots.strip_ids(svg, prefix) if svg else None


def _heat(delta_pp: float | None, scale: float = 10.0) -> str:
    """Background colour: white at 0, deep red at -scale pp or worse, pale green for gains."""
    if delta_pp is None:
        return "#f4f4f4"
    a = min(abs(delta_pp) / scale, 1.0)
    return f"rgba(214, 39, 40, {a:.2f})" if delta_pp < 0 else f"rgba(44, 160, 44, {a * 0.5:.2f})"


def _cell(g: dict) -> dict:
    d = g["delta"] * 100
    return {
        "text": f"{d:+.1f}", "bg": _heat(d), "flagged": g["flagged"],
        "title": f"{g['name']}: {g['base']:.1%} → {g['variant']:.1%} (n={g['n']}, excess {g['excess'] * 100:+.1f} pp, z={g['z']:.1f})",
    }


def _harm_row(r: dict, class_names: list[str]) -> dict:
    h = r["harm"]
    by_name = {g["name"]: g for g in h["classes"]}
    cells = [_cell(by_name[c]) if c in by_name else {"text": "-", "bg": _heat(None), "flagged": False, "title": ""}
             for c in class_names]
    return {"name": r["name"], "overall": f"{h['overall_delta'] * 100:+.2f}", "cells": cells,
            "cies": len(h.get("exemplars", [])), "cie_examples": ", ".join(map(str, h.get("exemplars", [])[:20]))}


def _slice_names(ok: list[dict]) -> list[str]:
    names: list[str] = []
    for r in ok:
        for g in (r.get("harm") or {}).get("slices", []):
            if g["name"] not in names:
                names.append(g["name"])
    return names


def _slice_row(r: dict, names: list[str]) -> dict:
    by_name = {g["name"]: g for g in r["harm"]["slices"]}
    return {"name": r["name"], "cells": [_cell(by_name[s]) if s in by_name else
                                         {"text": "-", "bg": _heat(None), "flagged": False, "title": ""} for s in names]}


def _fit_row(r: dict, targets: list[str]) -> dict:
    cells, cost = [], []
    for t in targets:
        f = (r.get("targets") or {}).get(t)
        if f is None:
            cells.append({"text": "-", "bg": "#f4f4f4", "title": "not evaluated"})
            cost.append({"text": "-", "title": ""})
            continue
        lat = f.get("latency_ms")
        cells.append({
            "text": ("fits" if f.get("fits") else "no") + (f" · {fmt_ms(lat)}" if lat is not None else ""),
            "bg": "#dff0d8" if f.get("fits") else "#f2dede",
            "title": f.get("reason", ""),
        })
        usd, co2 = f.get("cost_usd_per_million"), f.get("co2_g_per_million")
        cost.append({
            "text": f"{'-' if usd is None else f'{usd:.3g}'} · {'-' if co2 is None else f'{co2:.3g}'}",
            "title": f.get("cost_note", "estimate"),
        })
    return {"name": r["name"], "cells": cells, "cost": cost}
