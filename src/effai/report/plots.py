"""Matplotlib figures rendered to inline SVG strings: no image files, no CDN, no JavaScript.

Text is kept as SVG <text> (svg.fonttype none), so the report stays small and searchable,
and matplotlib's SVG writer escapes user text (model and class names) as XML. Mathtext is
off so a `$` in a name is shown, not parsed.
"""

from __future__ import annotations

import io
import math
import re

from effai.results import AXES, VariantRecord

_RC: dict = {"svg.fonttype": "none", "text.parse_math": False, "font.size": 9, "axes.spines.top": False,
       "axes.spines.right": False, "svg.hashsalt": "effai"}


def _svg(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    # Drop the XML prolog, DOCTYPE and RDF metadata (with its date): the <svg> element is
    # inlined into HTML, and the same study should give the same report.
    text = text[text.index("<svg"):]
    return re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)


def _figure(*args, **kw):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kw)


# Families keep one colour in every plot (the order is fixed, unknown families follow).
_FAMILIES = ("baseline", "precision", "quantization", "pruning", "distillation", "architecture", "search", "hardware")
_PALETTE = ("#555555", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#e377c2", "#bcbd22")
BEST_COLOUR = "#d62728"
_NUM = re.compile(r"^([-+]?\d+(?:\.\d*)?(?:e[-+]?\d+)?)(\s*)(.*)$")


def family_colour(family: str, families: list[str] | None = None) -> str:
    """The colour of a variant family, the same in every plot of a report."""
    order = list(_FAMILIES) + sorted(f for f in (families or []) if f not in _FAMILIES)
    return _PALETTE[order.index(family) % len(_PALETTE)] if family in order else _PALETTE[-1]


def unit_formatter(fmt, ref: float):
    """Tick labels in the unit `fmt` prints `ref` in (the table's unit), so one axis never mixes
    KB with MB, and plot and table read alike. Every effai unit prefix is a power of ten."""
    m = _NUM.match(fmt(ref))
    if m is None or float(m.group(1)) == 0:
        return lambda v, _=None: fmt(v)
    scale = 10 ** round(math.log10(abs(ref) / float(m.group(1))))
    sep, unit = m.group(2), m.group(3)
    return lambda v, _=None: f"{v / scale:.4g}{sep}{unit}"


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Round 1-2-5 ticks inside [lo, hi]; four evenly spaced ones when the range is too narrow for three."""
    ticks = [m * 10.0**e for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
             for m in (1, 2, 5)]
    inside = [t for t in ticks if lo <= t <= hi]
    if len(inside) > 6:
        decades = [t for t in inside if round(t / 10 ** math.floor(math.log10(t)), 6) == 1.0]
        inside = decades if len(decades) >= 3 else inside
    if len(inside) < 3:
        inside = [lo * (hi / lo) ** (i / 3) for i in range(4)]
    return inside


def interval_pp(r: VariantRecord) -> tuple[float, float] | None:
    """The 95% interval of a variant's test accuracy in percent: the record's own, else a Wilson
    interval from its test count (None without one)."""
    if r.accuracy_ci is not None:
        return r.accuracy_ci.low * 100, r.accuracy_ci.high * 100
    ev = r.evaluation
    if ev is None or not ev.n or r.accuracy is None:
        return None
    from effai.evaluate.stats import accuracy_interval

    k = round(r.accuracy * ev.n)
    ci = accuracy_interval([1] * k + [0] * (ev.n - k))
    return ci.low * 100, ci.high * 100


def _place_labels(fig, ax, texts) -> None:
    """Nudge point labels up or down until no two overlap (greedy, in display pixels)."""
    renderer = fig.canvas.get_renderer()
    placed: list = []
    for t in texts:
        x0, y0 = t.get_position()
        for k in range(40):
            dy = (k + 1) // 2 * 9 * (1 if k % 2 else -1)
            t.set_position((x0, y0 + dy))
            box = t.get_window_extent(renderer).expanded(1.08, 1.25)
            if not any(box.overlaps(b) for b in placed):
                break
        placed.append(box)


def pareto_svg(records: list[VariantRecord], axis: str, front: list[str], best: str | None = None) -> str | None:
    """Accuracy against one cost axis (log scale, ticks in the table's unit) with 95% intervals;
    points coloured by family, the selected variant a red star, the front joined by a line.
    None if no variant has a value on this axis."""
    import matplotlib
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

    ax_ = AXES[axis]
    pts: list[tuple[float, float, VariantRecord]] = [
        (x, r.accuracy * 100, r) for r in records
        if r.ok and (x := ax_.of(r)) and r.accuracy is not None]
    if not pts:
        return None
    families = sorted({r.family for *_, r in pts})
    with matplotlib.rc_context(_RC):
        fig, ax = _figure(figsize=(5.2, 3.8))
        on = set(front)
        lows: list[float] = []
        highs: list[float] = []
        texts: list = []
        for x, y, r in sorted(pts, key=lambda p: -p[1]):
            star = r.name == best
            colour = family_colour(r.family, families)
            ci = interval_pp(r)
            if ci is not None:
                ax.errorbar([x], [y], yerr=[[y - ci[0]], [ci[1] - y]], color=colour, alpha=0.35, lw=1, zorder=2)
                lows.append(ci[0])
                highs.append(ci[1])
            ax.scatter(x, y, s=110 if star else 26, marker="*" if star else "o", color=BEST_COLOUR if star else colour,
                       edgecolor="black" if r.name in on and not star else "none", zorder=3)
            t = ax.annotate(r.name, (x, y), fontsize=7, xytext=(5, 0), textcoords="offset points", va="center",
                            color=BEST_COLOUR if star else "#333333", fontweight="bold" if star else "normal")
            t.set_gid(f"ptlabel-{len(texts)}")
            texts.append(t)
        fr = [(x, y) for name in front for x, y, r in pts if r.name == name]
        if fr:
            ax.step([x for x, _ in fr], [y for _, y in fr], where="post", color="#1f77b4", lw=1, alpha=0.6)
        ys = [y for _, y, _ in pts]
        lo, hi = min(lows + ys), max(highs + ys)
        pad = max(0.5, (hi - lo) * 0.08)  # a 1-image difference never fills the axis
        ax.set_ylim(max(0.0, lo - pad), min(100.0, hi + pad) + 0.3)
        xs = [x for x, _, _ in pts]
        xlo, xhi = min(xs) / 1.6, max(xs) * 2.2  # room for the labels right of the points
        ax.set_xscale("log")
        ax.set_xlim(xlo, xhi)
        ax.xaxis.set_major_locator(FixedLocator(_log_ticks(xlo, xhi)))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(unit_formatter(ax_.fmt, max(xs))))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}%"))
        ax.set_xlabel(ax_.label)
        ax.set_ylabel("test accuracy (bars: 95% interval)")
        ax.set_title(f"accuracy vs {axis}" + (f": {best} ★" if best else ""))
        ax.grid(alpha=0.3)
        for fam in families:
            ax.scatter([], [], s=20, color=family_colour(fam, families), label=fam)
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        _place_labels(fig, ax, texts)
        return _svg(fig)


def robustness_svg(records: list[VariantRecord], best: str | None = None) -> str | None:
    """One small panel per corruption: accuracy against severity, one line per variant coloured by
    family; the selected variant thick and red, so it is found among many thin lines."""
    import matplotlib
    from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator

    evs = [(r, r.evaluation) for r in records if r.ok and r.evaluation is not None and r.evaluation.robustness]
    if not evs:
        return None
    names = list(evs[0][1].robustness)
    families = sorted({r.family for r, _ in evs})
    with matplotlib.rc_context(_RC):
        fig, axes = _figure(1, len(names), figsize=(2.6 * len(names), 3.0), sharey=True, squeeze=False)
        for j, cname in enumerate(names):
            ax = axes[0][j]
            for r, ev in evs:
                xs = [0] + list(ev.severities)
                ys = [ev.accuracy * 100] + [a * 100 for a in ev.robustness.get(cname, [])]
                star = r.name == best
                ax.plot(xs[: len(ys)], ys, marker=".", lw=2.4 if star else 0.9, alpha=1.0 if star else 0.55,
                        color=BEST_COLOUR if star else family_colour(r.family, families), zorder=3 if star else 2,
                        label=f"{r.name} (selected)" if star else None)
            ax.set_title(cname.replace("_", " "))
            ax.set_xlabel("severity (0 = clean)")
            ax.xaxis.set_major_locator(FixedLocator([0, *evs[0][1].severities]))
            ax.yaxis.set_major_locator(MaxNLocator(nbins=5, min_n_ticks=3))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}%"))
            ax.tick_params(labelleft=True)
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("accuracy")
        for fam in families:
            axes[0][-1].plot([], [], color=family_colour(fam, families), label=fam)
        axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
        return _svg(fig)


def strip_ids(svg: str, prefix: str) -> str:
    """Prefix every id (and reference to it) so several inlined SVGs never share an id."""
    svg = re.sub(r'id="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', svg)
    return re.sub(r'(url\(#|href="#)([^")]+)', lambda m: f"{m.group(1)}{prefix}{m.group(2)}", svg)
