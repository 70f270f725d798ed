"""A Markdown summary of a study, for a README, a pull request or a terminal."""

from __future__ import annotations

from effai.study.units import fmt_bytes, fmt_count, fmt_ms


def _md(text) -> str:
    """Escape what would break a Markdown table cell or inject HTML."""
    s = str(text)
    for ch, rep in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|"), ("\n", " ")):
        s = s.replace(ch, rep)
    return s


def render_markdown(result: dict) -> str:
    """The summary as a string.

    >>> print(render_markdown({"name": "t", "variants": [], "command": "effai study"}).splitlines()[0])
    # effai study: t
    """
    sel = result.get("selection") or {}
    verdict = {x["name"]: f"{x['kind']}: {x['reason']}" for x in sel.get("rejected", [])}
    ds = result.get("dataset") or {}
    lines = [
        f"# effai study: {_md(result.get('name', 'study'))}",
        "",
        f"Base model `{_md(result.get('model', '?'))}` on `{_md(ds.get('name', '?'))}`.",
        "",
        f"**Selected: {_md(sel['best'])}** — {_md(sel.get('reason', ''))}" if sel.get("best")
        else f"**No variant meets the constraints.** {_md(sel.get('reason', ''))}",
        "",
        "| variant | accuracy | size | format | MACs | latency p50 | energy | harmed classes | verdict |",
        "|---|---:|---:|---|---:|---:|---:|---|---|",
    ]
    for r in result.get("variants", []):
        if r.get("status") != "ok":
            lines.append(f"| {_md(r['name'])} | failed | | | | | | | {_md(r.get('error', ''))} |")
            continue
        e = r.get("energy_j")
        lines.append(
            f"| {_md(r['name'])} | {r['accuracy']:.2%} | {fmt_bytes(r.get('size_bytes'))} | {_md(r.get('size_format', ''))} "
            f"| {fmt_count(r.get('macs'))} | {fmt_ms(r.get('latency_ms'))} | {'-' if e is None else f'{e * 1e6:.3g} uJ'} "
            f"| {_md(', '.join((r.get('harm') or {}).get('flagged', [])))} "
            f"| {_md('selected' if r['name'] == sel.get('best') else verdict.get(r['name'], ''))} |"
        )
    lines += ["", "Reproduce:", "", "```", result.get("command", ""), "```", ""]
    return "\n".join(lines)
