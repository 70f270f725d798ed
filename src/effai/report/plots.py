"""Matplotlib figures rendered to inline SVG strings: no image files, no CDN, no JavaScript.

Text is kept as SVG <text> (svg.fonttype none), so the report stays small and searchable,
and matplotlib's SVG writer escapes user text (model and class names) as XML. Mathtext is
off so a `$` in a name is shown, not parsed.
"""

from __future__ import annotations

import io
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


def pareto_svg(records: list[VariantRecord], axis: str, front: list[str], best: str | None = None) -> str | None:
    """Accuracy against one cost axis (log scale, ticks in the axis's unit, as the tables print
    it); the front is joined by a line. None if no variant has a value on this axis."""
    import matplotlib

    ax_ = AXES[axis]
    pts = [(ax_.of(r), r.accuracy * 100, r) for r in records if r.ok and ax_.of(r) and r.accuracy is not None]
    if not pts:
        return None
    with matplotlib.rc_context(_RC):
        fig, ax = _figure(figsize=(5.2, 3.6))
        on = set(front)
        for x, y, r in pts:
            star = r.name == best
            ax.scatter(x, y, s=80 if star else 28, marker="*" if star else "o",
                       color="#d62728" if star else ("#1f77b4" if r.name in on else "#aaaaaa"), zorder=3)
            ax.annotate(r.name, (x, y), fontsize=7, xytext=(3, 3),
                        textcoords="offset points", color="#333333" if r.name in on else "#888888")
        fr = [(x, y) for name in front for x, y, r in pts if r.name == name]
        if fr:
            ax.step([x for x, _ in fr], [y for _, y in fr], where="post", color="#1f77b4", lw=1)
        ax.set_xscale("log")
        # Plain tick labels (mathtext is off, so the default 10^k labels would show as TeX).
        from matplotlib.ticker import FuncFormatter, NullFormatter

        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: ax_.fmt(v)))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(ax_.label)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"accuracy vs {axis}: Pareto front in blue" + (", selected ★" if best else ""))
        ax.grid(alpha=0.3)
        return _svg(fig)


def robustness_svg(records: list[VariantRecord]) -> str | None:
    """One small panel per corruption: accuracy against severity, one line per variant."""
    import matplotlib

    evs = [(r.name, r.evaluation) for r in records if r.ok and r.evaluation is not None and r.evaluation.robustness]
    if not evs:
        return None
    names = list(evs[0][1].robustness)
    with matplotlib.rc_context(_RC):
        fig, axes = _figure(1, len(names), figsize=(2.4 * len(names), 2.8), sharey=True, squeeze=False)
        cmap = matplotlib.colormaps["tab20"]
        for j, cname in enumerate(names):
            ax = axes[0][j]
            for i, (name, ev) in enumerate(evs):
                xs = [0] + list(ev.severities)
                ys = [ev.accuracy * 100] + [a * 100 for a in ev.robustness.get(cname, [])]
                ax.plot(xs[: len(ys)], ys, marker=".", lw=1, color=cmap(i % 20), label=name)
            ax.set_title(cname.replace("_", " "))
            ax.set_xlabel("severity (0 = clean)")
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("accuracy (%)")
        axes[0][-1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
        return _svg(fig)


def strip_ids(svg: str, prefix: str) -> str:
    """Prefix every id (and reference to it) so several inlined SVGs never share an id."""
    svg = re.sub(r'id="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', svg)
    return re.sub(r'(url\(#|href="#)([^")]+)', lambda m: f"{m.group(1)}{prefix}{m.group(2)}", svg)
