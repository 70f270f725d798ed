"""Pareto fronts and constraint selection over variant records (plain dicts).

A record has at least `name`, `status` ("ok" or "failed"), `accuracy` and the cost axes
below (`size_bytes`, `macs`, `latency_ms`, `energy_j`); `targets` maps a target name to
`{"fits": bool, "reason": str}`. Higher accuracy is better, lower cost is better.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from effai.study.units import fmt_bytes, fmt_count, fmt_ms

# Pareto axes: record key and how to print a value.
AXES = {
    "size": ("size_bytes", fmt_bytes),
    "macs": ("macs", fmt_count),
    "latency": ("latency_ms", fmt_ms),
    "energy": ("energy_j", lambda j: "-" if j is None else f"{j * 1e6:.3g} uJ"),
}


def pareto_front(records: list[dict], axis: str) -> list[str]:
    """Names of the variants no other variant beats on both accuracy and `axis` cost,
    sorted by cost.

    >>> recs = [{"name": "a", "status": "ok", "accuracy": 0.99, "size_bytes": 100},
    ...         {"name": "b", "status": "ok", "accuracy": 0.97, "size_bytes": 30},
    ...         {"name": "c", "status": "ok", "accuracy": 0.96, "size_bytes": 50}]
    >>> pareto_front(recs, "size")
    ['b', 'a']
    """
    key = AXES[axis][0]
    pts = [r for r in records if r.get("status") == "ok" and r.get(key) is not None]
    front = [r for r in pts if not any(_dominates(o, r, [key]) for o in pts)]
    return [r["name"] for r in sorted(front, key=lambda r: (r[key], -r["accuracy"]))]


@dataclass(frozen=True)
class Constraints:
    """What the user needs. None means "no limit"."""

    max_size_bytes: int | None = None
    max_latency_ms: float | None = None
    min_accuracy: float | None = None
    target: str | None = None  # the variant must fit this hardware target

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Selection:
    best: str | None
    reason: str
    feasible: list[str] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)  # {name, kind, reason}

    def to_dict(self) -> dict:
        return asdict(self)


def violations(rec: dict, c: Constraints) -> list[str]:
    """Why `rec` breaks the constraints, one phrase per constraint, with the margin.

    >>> violations({"size_bytes": 400_000, "latency_ms": 1.0, "accuracy": 0.9}, Constraints(max_size_bytes=250_000))
    ['size 400.0 KB > max 250.0 KB (by 150.0 KB, 1.60x)']
    """
    out = []
    size, lat, acc = rec.get("size_bytes"), rec.get("latency_ms"), rec.get("accuracy")
    if c.max_size_bytes is not None and (size is None or size > c.max_size_bytes):
        out.append("size unknown" if size is None else
                   f"size {fmt_bytes(size)} > max {fmt_bytes(c.max_size_bytes)} "
                   f"(by {fmt_bytes(size - c.max_size_bytes)}, {size / c.max_size_bytes:.2f}x)")
    if c.max_latency_ms is not None and (lat is None or lat > c.max_latency_ms):
        out.append("latency unknown" if lat is None else
                   f"latency {fmt_ms(lat)} > max {fmt_ms(c.max_latency_ms)} "
                   f"(by {fmt_ms(lat - c.max_latency_ms)}, {lat / c.max_latency_ms:.2f}x)")
    if c.min_accuracy is not None and (acc is None or acc < c.min_accuracy):
        out.append(f"accuracy {acc:.2%} < min {c.min_accuracy:.2%} (by {(c.min_accuracy - acc) * 100:.2f} pp)")
    if c.target is not None:
        fit = (rec.get("targets") or {}).get(c.target)
        if fit is None:
            out.append(f"fit on {c.target} not measured")
        elif not fit.get("fits"):
            out.append(f"does not fit {c.target}: {fit.get('reason', 'no reason given')}")
    return out


def select(records: list[dict], c: Constraints = Constraints()) -> Selection:
    """The most accurate variant that meets every constraint (ties: smaller, then faster),
    which is always on the Pareto front of the feasible set, and a reason for each other one.

    >>> recs = [{"name": "fp32", "status": "ok", "accuracy": 0.99, "size_bytes": 250_000, "latency_ms": 0.3},
    ...         {"name": "int8", "status": "ok", "accuracy": 0.98, "size_bytes": 65_000, "latency_ms": 0.2},
    ...         {"name": "int4", "status": "ok", "accuracy": 0.97, "size_bytes": 35_000, "latency_ms": 0.4}]
    >>> s = select(recs, Constraints(max_size_bytes=100_000))
    >>> s.best, [r["kind"] for r in s.rejected]
    ('int8', ['infeasible', 'pareto'])
    """
    ok = [r for r in records if r.get("status") == "ok"]
    rejected = [{"name": r["name"], "kind": "failed", "reason": f"failed to build or evaluate: {r.get('error')}"}
                for r in records if r.get("status") != "ok"]
    feasible = []
    for r in ok:
        v = violations(r, c)
        if v:
            rejected.append({"name": r["name"], "kind": "infeasible", "reason": "; ".join(v)})
        else:
            feasible.append(r)
    if not feasible:
        return Selection(None, "no variant meets every constraint; see the reasons below", [], _order(rejected, records))
    best = min(feasible, key=lambda r: (-r["accuracy"], _num(r.get("size_bytes")), _num(r.get("latency_ms"))))
    costs = [key for key, _ in AXES.values()]
    for r in feasible:
        if r is best:
            continue
        dom = next((o for o in feasible if o is not r and _dominates(o, r, costs)), None)
        if dom is not None:
            rejected.append({"name": r["name"], "kind": "dominated", "reason": _dominated_reason(r, dom, costs)})
        else:
            rejected.append({"name": r["name"], "kind": "pareto", "reason": _pareto_reason(r, best, costs)})
    n_ok = len(feasible)
    reason = (f"most accurate of the {n_ok} variant(s) meeting the constraints "
              f"({best['accuracy']:.2%}, {fmt_bytes(best.get('size_bytes'))}, {fmt_ms(best.get('latency_ms'))})")
    return Selection(best["name"], reason, [r["name"] for r in feasible], _order(rejected, records))


def _num(x) -> float:
    return float("inf") if x is None else x


def _dominates(a: dict, b: dict, costs: list[str]) -> bool:
    """a is at least as good as b on accuracy and every cost both have, and better on one."""
    shared = [k for k in costs if a.get(k) is not None and b.get(k) is not None]
    if a["accuracy"] < b["accuracy"] or any(a[k] > b[k] for k in shared):
        return False
    return a["accuracy"] > b["accuracy"] or any(a[k] < b[k] for k in shared)


def _better_on(a: dict, b: dict, costs: list[str]) -> list[str]:
    fmt = {key: f for key, f in AXES.values()}
    label = {key: axis for axis, (key, _) in AXES.items()}
    return [f"{label[k]} {fmt[k](a[k])} vs {fmt[k](b[k])}" for k in costs
            if a.get(k) is not None and b.get(k) is not None and a[k] < b[k]]


def _dominated_reason(r: dict, dom: dict, costs: list[str]) -> str:
    better = _better_on(dom, r, costs)
    acc = f"accuracy {dom['accuracy']:.2%} vs {r['accuracy']:.2%}"
    return f"feasible but dominated by {dom['name']} ({acc}" + (f"; {', '.join(better)}" if better else "") + ")"


def _pareto_reason(r: dict, best: dict, costs: list[str]) -> str:
    gain = _better_on(r, best, costs)
    return (f"feasible and Pareto-optimal, but {(best['accuracy'] - r['accuracy']) * 100:.2f} pp less accurate "
            f"than {best['name']}" + (f"; pick it if you prefer {', '.join(gain)}" if gain else ""))


def _order(rejected: list[dict], records: list[dict]) -> list[dict]:
    pos = {r["name"]: i for i, r in enumerate(records)}
    return sorted(rejected, key=lambda x: pos.get(x["name"], 0))
