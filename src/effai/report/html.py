"""The self-contained HTML report: a Jinja2 template with autoescape on, inline SVG plots
and a few lines of inline JavaScript for sorting. It opens offline; nothing is fetched."""

from __future__ import annotations

import json
import time
from pathlib import Path

from effai.report import plots
from effai.results import (
    AXES,
    Evaluation,
    GroupHarm,
    Harm,
    Selection,
    StudyResult,
    VariantRecord,
    fmt_bytes,
    fmt_count,
    fmt_fraction,
    fmt_joules,
    fmt_ms,
)
from effai.results.units import fmt_usd


def render_html(result: StudyResult) -> str:
    """The report as one HTML string (see `effai.report.write_html`)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("effai.report", "templates"),
        autoescape=True,  # every user string (model, class, slice, layer names) becomes text
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("report.html.j2").render(**context(result))


def context(result: StudyResult) -> dict:
    """Everything the template shows, formatted; the template only lays it out."""
    from effai import __version__

    ok = [r for r in result.variants if r.ok]
    class_names = list(result.dataset.class_names)
    fit_targets = sorted({t for r in ok for t in r.targets})
    slice_names = _slice_names(ok)
    return {
        "title": result.name,
        "model": result.base.name,
        "dataset": result.dataset,
        "version": __version__,
        "written": time.strftime("%Y-%m-%d %H:%M"),
        "selection": result.selection,
        "uncertainty": uncertainty(result),
        "constraints_text": result.constraints.describe(),
        "notes": list(result.notes),
        "rows": _rows(result),
        "latency_note": result.latency_note,
        "energy_note": result.energy_note,
        "pareto_plots": _pareto_plots(ok, result.pareto, result.selection.best),
        "harm_rows": [_harm_row(r, class_names) for r in ok if r.harm is not None],
        "harm_power": _harm_power(ok),
        "slice_names": slice_names,
        "slice_rows": [_slice_row(r, slice_names) for r in ok if r.harm is not None and r.harm.slices],
        "robustness_svg": _prefixed(plots.robustness_svg(ok, result.selection.best), "rob-"),
        "confusions": _confusions(ok, class_names, result.reference, result.selection.best),
        "fit_targets": fit_targets,
        "fit_rows": [_fit_row(r, fit_targets) for r in ok],
        "fit_note": result.fit_note,
        "mcu_rows": [_mcu_row(r, t, f) for r in ok for t, f in sorted(r.targets.items()) if f.flash_bytes is not None],
        "command": result.command,
        "ship": _ship(result),
        "config_json": json.dumps(result.config, indent=2, default=str),
        "environment_json": json.dumps(result.environment.to_dict(), indent=2, default=str),
    }


def uncertainty(result: StudyResult) -> str:
    """How sure the recommendation is, in one sentence: the chosen variant's accuracy interval
    on the test set and the variants its accuracy is statistically tied with ("" when none is chosen).

    >>> from effai.results import AccuracyInterval, BaseModelInfo, DatasetInfo, Selection
    >>> a = VariantRecord("a", accuracy=0.9, accuracy_ci=AccuracyInterval(0.85, 0.94))
    >>> r = StudyResult("s", BaseModelInfo("m"), DatasetInfo("d", n_test=200), (a,), selection=Selection("a", "why", ("a",)))
    >>> uncertainty(r)
    'Uncertainty: on 200 test examples its accuracy is known to ±4.5 pp (95% CI 85.00-94.00%, Wilson); no other variant meets the constraints.'
    """
    sel = result.selection
    best = result.variant(sel.best) if sel.best else None
    if best is None:
        return ""
    ci = best.accuracy_ci
    how_sure = (f"on {result.dataset.n_test} test examples its accuracy is known to "
                f"±{(ci.high - ci.low) * 50:.1f} pp ({ci.describe()}, Wilson)" if ci else
                f"accuracy {fmt_fraction(best.accuracy)} (no interval recorded)")
    tied = [v.name for v in sel.rejected if v.kind == "tie"]
    others = [n for n in sel.feasible if n != best.name]
    if tied:
        ties = (f"statistically tied with {', '.join(tied)} (paired McNemar test, p >= 0.05): the pick among them is "
                "made on cost, not accuracy")
    elif others:
        ties = (f"the other {len(others)} variant(s) meeting the constraints are less accurate beyond noise "
                "(paired McNemar test, p < 0.05)")
    else:
        ties = "no other variant meets the constraints"
    return f"Uncertainty: {how_sure}; {ties}."


def _lat_flags(r: VariantRecord) -> list[str]:
    """The latency's warnings (contended, slower than fp32) and its file's caveat (timed as fp32)."""
    flags = [] if r.cost.latency is None else r.cost.latency.warnings()
    caveat = "" if r.artifact is None else r.artifact.latency_caveat()
    return flags + ([caveat] if caveat else [])


def _measured_on(art) -> str:
    return (f"measured in {art.runtime}" if art.measured_on == "file"
            else f"measured on the torch model ({art.note})")


def _ship(result: StudyResult) -> dict | None:
    """The winner's file in OUT/best/, linked relative to the report (which sits in OUT/)."""
    best = result.best
    if not result.best_dir or best is None or best.artifact is None:
        return None
    art = best.artifact
    return {"href": f"best/{Path(art.file).name}", "manifest": "best/manifest.json", "bytes": fmt_bytes(art.bytes),
            "runtime": art.runtime, "sha256": art.sha256, "measured_on": _measured_on(art),
            "reproduce": result.reproduce}


def _harm_power(ok: list[VariantRecord]) -> str:
    """How small a per-class drop the harm test could see, in words ("" before the field existed)."""
    drops = [(g.min_detectable_drop, g.n) for r in ok if r.harm is not None for g in r.harm.classes
             if g.min_detectable_drop is not None]
    if not drops:
        return ""
    lo, hi = min(d for d, _ in drops), max(d for d, _ in drops)
    ns = sorted({n for _, n in drops})
    return (f"With {ns[0]}-{ns[-1]} test examples a class, the smallest drop the test detects (80% power) is "
            f"{lo * 100:.0f}-{hi * 100:.0f} pp: smaller harm can go unflagged.")


def _v(x) -> str:
    """A sort key for data-v: numbers as is, missing values sort last (as text)."""
    return "" if x is None else repr(float(x))


def _verdict(r: VariantRecord, selection: Selection) -> tuple[str, str]:
    """(kind, reason) of a row: selected, a rejection's kind, or failed."""
    if r.name == selection.best:
        return "selected", selection.reason
    v = selection.verdict(r.name)
    if v is not None:
        return v.kind, v.reason
    return ("failed", r.error or "") if not r.ok else ("", "")


def _rows(result: StudyResult) -> list[dict]:
    ref = result.variant(result.reference) if result.reference else None
    base_acc = ref.accuracy if ref is not None else None
    return [_row(r, base_acc, result.selection) for r in result.variants]


def _row(r: VariantRecord, base_acc: float | None, selection: Selection) -> dict:
    ev, c = r.evaluation, r.cost
    mca = ev.mean_corrupted_accuracy if ev is not None else None
    top5 = ev.topk.get("top5") if ev is not None else None
    ece = ev.ece if ev is not None else None
    delta = None if r.accuracy is None or base_acc is None else (r.accuracy - base_acc) * 100
    kind, verdict = _verdict(r, selection)
    energy = "" if c.energy is None else f"{c.energy.method}: {c.energy.model}".strip(": ")
    return {
        "name": r.name, "family": r.family, "description": r.description,
        "css": "selected" if kind == "selected" else ("failed" if not r.ok else ""),
        "acc": fmt_fraction(r.accuracy), "acc_v": _v(r.accuracy),
        "acc_ci": "" if r.accuracy_ci is None else r.accuracy_ci.describe(),
        "delta": "-" if delta is None else f"{delta:+.2f}", "delta_v": _v(delta),
        "top5": fmt_fraction(top5), "top5_v": _v(top5),
        "ece": "-" if ece is None else f"{ece:.3f}", "ece_v": _v(ece),
        "mca": fmt_fraction(mca, 1), "mca_v": _v(mca),
        "size": fmt_bytes(c.size_bytes), "size_v": _v(c.size_bytes), "size_format": c.size_format,
        "params": fmt_count(c.params), "params_v": _v(c.params),
        "macs": fmt_count(c.macs), "macs_v": _v(c.macs),
        "lat": fmt_ms(r.latency_ms), "lat_flags": _lat_flags(r), "lat_v": _v(r.latency_ms), "runtime": c.latency.how if c.latency else "",
        "energy": fmt_joules(r.energy_j), "energy_v": _v(r.energy_j), "energy_method": energy,
        "flagged": r.flagged, "kind": kind, "verdict": verdict,
        "file": "" if r.artifact is None else r.artifact.file,
        "manifest": "" if r.artifact is None else str(Path(r.artifact.file).parent / "manifest.json"),
        "file_note": "" if r.artifact is None else _measured_on(r.artifact),
    }


def _pareto_plots(ok: list[VariantRecord], pareto: dict[str, tuple[str, ...]], best: str | None) -> list[dict]:
    out = []
    for axis in AXES:
        front = list(pareto.get(axis, ()))
        svg = plots.pareto_svg(ok, axis, front, best)
        if svg:
            out.append({"axis": axis, "svg": plots.strip_ids(svg, f"p{axis}-"), "front": front})
    return out


def _prefixed(svg: str | None, prefix: str) -> str | None:
    return plots.strip_ids(svg, prefix) if svg else None


def _confusions(ok: list[VariantRecord], class_names: list[str], base: str | None, best: str | None) -> list[dict]:
    """One confusion matrix per evaluated variant: the base and the selected one first, shown open."""
    shown = [r for r in ok if r.evaluation is not None]
    shown.sort(key=lambda r: (r.name != base, r.name != best))
    return [{"name": r.name, "open": r.name in (base, best), "role": _role(r.name, base, best),
             **_confusion(r.evaluation, class_names)} for r in shown if r.evaluation is not None]


def _role(name: str, base: str | None, best: str | None) -> str:
    return " (selected)" if name == best else (" (base)" if name == base else "")


def _confusion(ev: Evaluation, class_names: list[str]) -> dict:
    """Counts (rows: true class, columns: predicted), shaded by the share of the true class's row."""
    k = len(class_names)
    m = [list(row) for row in ev.confusion] if ev.confusion else [[0] * k for _ in range(k)]
    if not ev.confusion:  # older records kept only the predictions
        for t, p in zip(ev.labels, ev.predictions, strict=True):
            m[t][p] += 1
    rows = []
    for i, row in enumerate(m):
        n = sum(row) or 1
        rows.append({"name": class_names[i] if i < len(class_names) else str(i), "n": sum(row), "cells": [
            {"text": str(c), "bg": f"rgba({'44, 160, 44' if i == j else '214, 39, 40'}, {min(c / n, 1.0) * 0.8:.2f})",
             "title": f"true {class_names[i] if i < k else i}, predicted {class_names[j] if j < k else j}: {c}"}
            for j, c in enumerate(row)]})
    return {"rows": rows}


def _heat(delta_pp: float | None, scale: float = 10.0) -> str:
    """Background colour: white at 0, deep red at -scale pp or worse, pale green for gains."""
    if delta_pp is None:
        return "#f4f4f4"
    a = min(abs(delta_pp) / scale, 1.0)
    return f"rgba(214, 39, 40, {a:.2f})" if delta_pp < 0 else f"rgba(44, 160, 44, {a * 0.5:.2f})"


def _cell(g: GroupHarm) -> dict:
    d = g.delta * 100
    return {
        "text": f"{d:+.1f}", "bg": _heat(d), "flagged": g.flagged,
        "title": f"{g.name}: {g.base:.1%} → {g.variant:.1%} (n={g.n}, excess {g.excess * 100:+.1f} pp"
                 + ("" if g.p_value is None else f", McNemar p={g.p_value:.3f} Holm-corrected")
                 + ("" if g.min_detectable_drop is None else
                    f"; smallest drop detectable at this n: {g.min_detectable_drop * 100:.0f} pp") + ")",
    }


_NO_CELL = {"text": "-", "bg": _heat(None), "flagged": False, "title": ""}


def _harm_row(r: VariantRecord, class_names: list[str]) -> dict:
    h = r.harm or Harm(0.0, [])
    by_name = {g.name: g for g in h.classes}
    cells = [_cell(by_name[c]) if c in by_name else _NO_CELL for c in class_names]
    return {"name": r.name, "overall": f"{h.overall_delta * 100:+.2f}", "cells": cells,
            "cies": len(h.exemplars), "cie_examples": ", ".join(map(str, h.exemplars[:20]))}


def _slice_names(ok: list[VariantRecord]) -> list[str]:
    names: list[str] = []
    for r in ok:
        for g in r.harm.slices if r.harm is not None else []:
            if g.name not in names:
                names.append(g.name)
    return names


def _slice_row(r: VariantRecord, names: list[str]) -> dict:
    by_name = {g.name: g for g in (r.harm.slices if r.harm is not None else [])}
    return {"name": r.name, "cells": [_cell(by_name[s]) if s in by_name else _NO_CELL for s in names]}


def _mcu_row(r: VariantRecord, target: str, f) -> dict:
    """A microcontroller's flash, SRAM and latency: the built firmware's, or the estimate's."""
    return {"name": r.name, "target": target, "method": f.method, "flash": fmt_bytes(f.flash_bytes),
            "sram": fmt_bytes(f.sram_bytes), "latency": fmt_ms(f.latency_ms), "latency_method": f.latency_method,
            "bit_exact": "-" if f.bit_exact is None else ("yes" if f.bit_exact else "NO"),
            "fits": "fits" if f.fits else "no", "reason": f.reason}


def _fit_row(r: VariantRecord, targets: list[str]) -> dict:
    cells, cost = [], []
    for t in targets:
        f = r.targets.get(t)
        if f is None:
            cells.append({"text": "-", "bg": "#f4f4f4", "title": "not evaluated"})
            cost.append({"text": "-", "title": ""})
            continue
        lat = f" · {fmt_ms(f.latency_ms)}" if f.latency_ms is not None else ""
        cells.append({"text": ("fits" if f.fits else "no") + lat,
                      "bg": "#dff0d8" if f.fits else "#f2dede", "title": f.reason})
        usd, co2 = f.cost_usd_per_million, f.co2_g_per_million
        cost.append({
            "text": f"{fmt_usd(usd)} · {'-' if co2 is None else f'{co2:.3g}'}",
            "title": f.cost_note or "estimate",
        })
    return {"name": r.name, "cells": cells, "cost": cost}
