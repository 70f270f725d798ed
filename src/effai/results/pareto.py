"""Pareto fronts, dominance, constraints and selection over variant records: one definition,
used by the study and the search alike.

Higher accuracy is better; every cost axis (`AXES`: size, MACs, latency, energy) is better
lower. A record dominates another when it is at least as good on accuracy and on every cost
both have, and better on one.

>>> from effai.results.records import Cost, VariantRecord
>>> recs = [VariantRecord("a", accuracy=0.99, cost=Cost(size_bytes=100)),
...         VariantRecord("b", accuracy=0.97, cost=Cost(size_bytes=30)),
...         VariantRecord("c", accuracy=0.96, cost=Cost(size_bytes=50))]
>>> [r.name for r in pareto_front(recs, ["size"])]
['b', 'a']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from effai.results.records import VariantRecord
from effai.results.serial import Record
from effai.results.units import fmt_bytes, fmt_count, fmt_fraction, fmt_joules, fmt_ms

T = TypeVar("T")
Split = Literal["test", "val"]


@dataclass(frozen=True)
class Axis:
    """One cost axis: how to read it from a record, print it and label a plot with it."""

    name: str
    of: Callable[[VariantRecord], float | None]
    fmt: Callable[[float | None], str]
    label: str


AXES: dict[str, Axis] = {
    "size": Axis("size", lambda r: r.size_bytes, fmt_bytes, "size (storage format)"),
    "macs": Axis("macs", lambda r: r.macs, fmt_count, "MACs per inference"),
    "latency": Axis("latency", lambda r: r.latency_ms, fmt_ms, "latency p50"),
    "energy": Axis("energy", lambda r: r.energy_j, fmt_joules, "energy per inference"),
}


def accuracy(r: VariantRecord, on: Split = "test") -> float | None:
    """The accuracy a comparison uses: test (what the study reports) or validation (what a search may optimise)."""
    return r.val_accuracy if on == "val" else r.accuracy


# ------------------------------------------------------------------ dominance and fronts
def dominates(a: VariantRecord, b: VariantRecord, axes: Sequence[str] = tuple(AXES), on: Split = "test") -> bool:
    """`a` is at least as accurate and as cheap on every axis both have, and better on one.

    >>> from effai.results.records import Cost, VariantRecord
    >>> small = VariantRecord("s", accuracy=0.9, cost=Cost(size_bytes=100))
    >>> big = VariantRecord("b", accuracy=0.8, cost=Cost(size_bytes=200))
    >>> dominates(small, big, ["size"]), dominates(big, small, ["size"])
    (True, False)
    """
    acc_a, acc_b = accuracy(a, on), accuracy(b, on)
    if acc_a is None or acc_b is None or acc_a < acc_b:
        return False
    values = [(AXES[k].of(a), AXES[k].of(b)) for k in axes]
    pairs = [(x, y) for x, y in values if x is not None and y is not None]
    if any(x > y for x, y in pairs):
        return False
    return acc_a > acc_b or any(x < y for x, y in pairs)


def pareto_front(items: Iterable[T], axes: Sequence[str], on: Split = "test",
                 of: Callable[[T], VariantRecord] = lambda x: x) -> list[T]:  # type: ignore[assignment,return-value]
    """The ok items no other ok item dominates on accuracy and `axes`, sorted by the first
    axis (then most accurate first). `of` reads the record of an item (a search trial)."""
    pts = [x for x in items if of(x).ok and accuracy(of(x), on) is not None
           and all(AXES[k].of(of(x)) is not None for k in axes[:1])]
    front = [x for x in pts if not any(dominates(of(o), of(x), axes, on) for o in pts if o is not x)]
    first = AXES[axes[0]].of if axes else (lambda r: 0.0)
    return sorted(front, key=lambda x: (first(of(x)), -accuracy(of(x), on)))  # type: ignore[operator]


# ------------------------------------------------------------------ constraints
@dataclass(frozen=True)
class Constraints(Record):
    """What the user needs. None means "no limit"."""

    max_size_bytes: int | None = None
    max_latency_ms: float | None = None
    max_ram_bytes: int | None = None  # peak activation memory
    min_accuracy: float | None = None
    target: str | None = None  # the variant must fit this hardware target
    min_robustness: float | None = None  # lowest mean accuracy over the corruptions measured

    def describe(self) -> str:
        """The constraints in words.

        >>> Constraints(max_size_bytes=250_000, target="nano33ble").describe()
        'size ≤ 250.0 KB, fits nano33ble'
        """
        parts = []
        if self.max_size_bytes is not None:
            parts.append(f"size ≤ {fmt_bytes(self.max_size_bytes)}")
        if self.max_ram_bytes is not None:
            parts.append(f"RAM ≤ {fmt_bytes(self.max_ram_bytes)}")
        if self.max_latency_ms is not None:
            parts.append(f"latency ≤ {fmt_ms(self.max_latency_ms)}")
        if self.min_accuracy is not None:
            parts.append(f"accuracy ≥ {fmt_fraction(self.min_accuracy)}")
        if self.target is not None:
            parts.append(f"fits {self.target}")
        if self.min_robustness is not None:
            parts.append(f"mean corrupted accuracy ≥ {fmt_fraction(self.min_robustness)}")
        return ", ".join(parts) or "none (the most accurate variant wins)"

    def _limits(self, r: VariantRecord) -> list[tuple[str, float | None, float | None, Callable]]:
        """(what, value, upper limit, formatter) for every upper limit."""
        return [("size", r.size_bytes, self.max_size_bytes, fmt_bytes),
                ("RAM", r.cost.peak_activation_bytes, self.max_ram_bytes, fmt_bytes),
                ("latency", r.latency_ms, self.max_latency_ms, fmt_ms)]


def margins(r: VariantRecord, c: Constraints) -> dict[str, float]:
    """Value minus limit for every upper limit the record has a value for (<= 0: met), as
    Optuna's constrained samplers take them.

    >>> from effai.results.records import Cost, VariantRecord
    >>> margins(VariantRecord("x", cost=Cost(size_bytes=50)), Constraints(max_size_bytes=64, max_latency_ms=1))
    {'size': -14.0}
    """
    return {what.lower(): float(v) - float(limit) for what, v, limit, _ in c._limits(r)
            if limit is not None and v is not None}


def violations(r: VariantRecord, c: Constraints, on: Split = "test") -> list[str]:
    """Why `r` breaks the constraints, one phrase per constraint, with the margin.

    >>> from effai.results.records import Cost, VariantRecord
    >>> violations(VariantRecord("x", accuracy=0.9, cost=Cost(size_bytes=400_000)), Constraints(max_size_bytes=250_000))
    ['size 400.0 KB > max 250.0 KB (by 150.0 KB, 1.60x)']
    """
    out = []
    for what, v, limit, fmt in c._limits(r):
        if limit is None:
            continue
        if v is None:
            out.append(f"{what} unknown")
        elif v > limit:
            out.append(f"{what} {fmt(v)} > max {fmt(limit)} (by {fmt(v - limit)}, {v / limit:.2f}x)")
    acc = accuracy(r, on)
    if c.min_accuracy is not None and (acc is None or acc < c.min_accuracy):
        out.append("accuracy unknown" if acc is None else
                   f"accuracy {fmt_fraction(acc)} < min {fmt_fraction(c.min_accuracy)} "
                   f"(by {(c.min_accuracy - acc) * 100:.2f} pp)")
    if c.min_robustness is not None and (r.robustness is None or r.robustness < c.min_robustness):
        out.append("robustness not measured" if r.robustness is None else
                   f"mean corrupted accuracy {fmt_fraction(r.robustness)} < min {fmt_fraction(c.min_robustness)}")
    if c.target is not None:
        fit = r.targets.get(c.target)
        if fit is None:
            out.append(f"fit on {c.target} not measured")
        elif not fit.fits:
            out.append(f"does not fit {c.target}: {fit.reason or 'no reason given'}")
    return out


# ------------------------------------------------------------------ selection
@dataclass(frozen=True)
class Verdict(Record):
    """Why a variant was not selected."""

    name: str
    kind: Literal["failed", "infeasible", "tie", "dominated", "pareto", "repeat"]
    reason: str


@dataclass(frozen=True)
class Selection(Record):
    """The chosen variant (None when nothing meets the constraints) and a verdict on every other."""

    best: str | None
    reason: str
    feasible: tuple[str, ...] = ()
    rejected: tuple[Verdict, ...] = ()
    leader: str | None = None  # the most accurate feasible variant, that the others are tested against

    def verdict(self, name: str) -> Verdict | None:
        return next((v for v in self.rejected if v.name == name), None)


def feasible(records: Sequence[VariantRecord], c: Constraints = Constraints(), on: Split = "test") -> list[VariantRecord]:
    """The ok records that meet every constraint."""
    return [r for r in records if r.ok and not violations(r, c, on)]


def leader(records: Sequence[VariantRecord], c: Constraints = Constraints(),
           on: Split = "test") -> VariantRecord | None:
    """The most accurate feasible record (exact ties: smaller, then faster); None when none is feasible.
    The study tests every variant against it (`VariantRecord.vs_leader`) before `select`."""
    ok = feasible(records, c, on)
    return min(ok, key=lambda r: (-(accuracy(r, on) or 0.0), _num(r.size_bytes), _latency(r))) if ok else None


def select(records: Sequence[VariantRecord], c: Constraints = Constraints(), on: Split = "test",
           alpha: float = 0.05) -> Selection:
    """The cheapest variant whose accuracy ties the leader's, among those meeting every
    constraint, and a reason for each other one.

    The leader is the most accurate feasible variant. A variant ties it when its paired test
    against the leader (`vs_leader`, McNemar on the same test examples) does not reject equal
    accuracy at `alpha`; records without that test tie only on exactly equal accuracy. Ties are
    broken by cost (smaller, then faster beyond the latencies' spread; a latency marked slower
    than fp32 never counts as an advantage), then robustness (mean corrupted accuracy), then the
    number of hardware targets fitted, then accuracy.

    >>> from effai.results.records import Cost, Latency, VariantRecord
    >>> def rec(name, acc, size, ms):
    ...     return VariantRecord(name, accuracy=acc, cost=Cost(size_bytes=size, latency=Latency(ms)))
    >>> recs = [rec("fp32", 0.99, 250_000, 0.3), rec("int8", 0.98, 65_000, 0.2), rec("int4", 0.97, 35_000, 0.4)]
    >>> s = select(recs, Constraints(max_size_bytes=100_000))
    >>> s.best, [v.kind for v in s.rejected]
    ('int8', ['infeasible', 'pareto'])
    """
    rejected = [Verdict(r.name, "failed", f"failed to build or evaluate: {r.error}") for r in records if not r.ok]
    rejected += [Verdict(r.name, "infeasible", "; ".join(violations(r, c, on)))
                 for r in records if r.ok and violations(r, c, on)]
    ok = feasible(records, c, on)
    lead = leader(records, c, on)
    if lead is None:
        return Selection(None, "no variant meets every constraint; see the reasons below", (),
                         _in_order(rejected, records))
    tied = [r for r in ok if r is lead or _ties(r, lead, on, alpha)]
    best, why = _break_tie(tied)
    if best is lead:
        reason = (f"most accurate of the {len(ok)} variant(s) meeting the constraints ({_acc(best, on)}, "
                  f"{fmt_bytes(best.size_bytes)}, {fmt_ms(best.latency_ms)})")
    else:
        reason = f"ties {lead.name} on accuracy ({_p(best)}); {_against_lead(best, lead)}{why}; {_acc(best, on)}"
    for r in ok:
        if r is best:
            continue
        if r in tied:
            rejected.append(Verdict(r.name, "tie", _tie_reason(r, best, lead)))
            continue
        dom = next((o for o in ok if o is not r and dominates(o, r, tuple(AXES), on)), None)
        rejected.append(Verdict(r.name, "dominated", _dominated_reason(r, dom, on)) if dom is not None else
                        Verdict(r.name, "pareto", _pareto_reason(r, lead, on)))
    return Selection(best.name, reason, tuple(r.name for r in ok), _in_order(rejected, records), lead.name)


def _ties(r: VariantRecord, lead: VariantRecord, on: Split, alpha: float) -> bool:
    if on == "test" and r.vs_leader is not None and r.vs_leader.against == lead.name:
        return r.vs_leader.tie(alpha)
    return accuracy(r, on) == accuracy(lead, on)


def _latency(r: VariantRecord) -> float:
    """The latency a comparison uses: unknown, or slower than fp32 on its runtime, counts as no advantage."""
    lat = r.cost.latency
    return float("inf") if lat is None or lat.slower_than_fp32 else lat.p50_ms


def _clearly_faster(a: VariantRecord, b: VariantRecord) -> bool:
    """`a`'s latency is below `b`'s by more than either's spread (IQR), and `a` is not slower than fp32."""
    x, y = _latency(a), _latency(b)
    if x == float("inf") or y == float("inf"):
        return x < y
    spread = max((a.cost.latency.iqr_ms or 0.0) if a.cost.latency else 0.0,
                 (b.cost.latency.iqr_ms or 0.0) if b.cost.latency else 0.0)
    return y - x > spread


def _break_tie(tied: list[VariantRecord]) -> tuple[VariantRecord, str]:
    """The tied record to recommend, and (when size alone did not decide) why it beats the ones as small."""
    pool = sorted(tied, key=lambda r: _num(r.size_bytes))
    if len(pool) == 1 or _num(pool[0].size_bytes) < _num(pool[1].size_bytes):
        return pool[0], ""
    pool = [r for r in pool if r.size_bytes == pool[0].size_bytes]
    fast = min(pool, key=_latency)
    if all(_clearly_faster(fast, r) for r in pool if r is not fast):
        other = min((r for r in pool if r is not fast), key=_latency)
        return fast, f"; as small as {other.name}, faster ({fmt_ms(fast.latency_ms)} vs {fmt_ms(other.latency_ms)})"
    pool = [r for r in pool if not _clearly_faster(fast, r)]
    key = lambda r: (_num_neg(r.robustness), -sum(t.fits for t in r.targets.values()), _num_neg(r.accuracy))  # noqa: E731
    pool.sort(key=key)
    best = pool[0]
    runner_up: VariantRecord | None = pool[1] if len(pool) > 1 else None
    if runner_up is None:
        return best, ""
    if (best.robustness or 0) > (runner_up.robustness or 0):
        return best, (f"; as small as {runner_up.name} and no slower, more robust (mean corrupted accuracy "
                      f"{fmt_fraction(best.robustness)} vs {fmt_fraction(runner_up.robustness)})")
    if key(best)[1] < key(runner_up)[1]:
        return best, (f"; as small as {runner_up.name} and no slower, fits more hardware targets "
                      f"({-key(best)[1]} vs {-key(runner_up)[1]})")
    return best, f"; as small as {runner_up.name} and no slower"


def _against_lead(best: VariantRecord, lead: VariantRecord) -> str:
    """How the recommended variant's size and latency compare with the leader's, in words, trade-offs
    included (latencies as measured, each in its own runtime; a gap within either's spread is no gap)."""
    parts = []
    if _num(best.size_bytes) < _num(lead.size_bytes):
        parts.append(f"smaller than {lead.name} ({fmt_bytes(best.size_bytes)} vs {fmt_bytes(lead.size_bytes)})")
    b, a = best.cost.latency, lead.cost.latency
    if b is not None and a is not None:
        spread = max(b.iqr_ms or 0.0, a.iqr_ms or 0.0)
        flag = "; slower than fp32 on its runtime" if b.slower_than_fp32 else ""
        if b.p50_ms < a.p50_ms - spread and not b.slower_than_fp32:
            parts.append(f"faster ({fmt_ms(b.p50_ms)} vs {fmt_ms(a.p50_ms)})")
        elif b.p50_ms > a.p50_ms + spread or b.slower_than_fp32:
            parts.append(f"but slower ({fmt_ms(b.p50_ms)} vs {fmt_ms(a.p50_ms)}{flag})")
    return ", ".join(parts) if parts else f"as small and fast as {lead.name}"


def _tie_reason(r: VariantRecord, best: VariantRecord, lead: VariantRecord) -> str:
    head = (f"most accurate, but {best.name} ties it on accuracy ({_p(best)})" if r is lead else
            f"ties {lead.name} on accuracy ({_p(r)})")
    if _num(best.size_bytes) < _num(r.size_bytes):
        return f"{head}; {best.name} is smaller ({fmt_bytes(best.size_bytes)} vs {fmt_bytes(r.size_bytes)})"
    return f"{head}; {best.name} wins the tie on latency, robustness or target fit"


def _p(r: VariantRecord) -> str:
    return f"p={r.vs_leader.p_value:.2f}, {r.vs_leader.test}" if r.vs_leader is not None else "equal"


def _acc(r: VariantRecord, on: Split) -> str:
    ci = f", {r.accuracy_ci.describe()}" if on == "test" and r.accuracy_ci is not None else ""
    return f"accuracy {fmt_fraction(accuracy(r, on))}{ci}"


def _num(x) -> float:
    return float("inf") if x is None else x


def _num_neg(x) -> float:
    return float("inf") if x is None else -x


def _better_on(a: VariantRecord, b: VariantRecord) -> list[str]:
    """The axes on which `a` is cheaper than `b`, with both values (latency only beyond the spread)."""
    out = []
    for axis in AXES.values():
        x, y = axis.of(a), axis.of(b)
        if axis.name == "latency" and not _clearly_faster(a, b):
            continue
        if x is not None and y is not None and x < y:
            out.append(f"{axis.name} {axis.fmt(x)} vs {axis.fmt(y)}")
    return out


def _dominated_reason(r: VariantRecord, dom: VariantRecord, on: Split) -> str:
    better = _better_on(dom, r)
    acc = f"accuracy {fmt_fraction(accuracy(dom, on))} vs {fmt_fraction(accuracy(r, on))}"
    return f"feasible but dominated by {dom.name} ({acc}" + (f"; {', '.join(better)}" if better else "") + ")"


def _pareto_reason(r: VariantRecord, lead: VariantRecord, on: Split) -> str:
    gain = _better_on(r, lead)
    gap = ((accuracy(lead, on) or 0.0) - (accuracy(r, on) or 0.0)) * 100
    test = f" ({_p(r)})" if on == "test" and r.vs_leader is not None else ""
    return (f"feasible and Pareto-optimal, but {gap:.2f} pp less accurate than {lead.name}{test}"
            + (f"; pick it if you prefer {', '.join(gain)}" if gain else ""))


def _in_order(rejected: list[Verdict], records: Sequence[VariantRecord]) -> tuple[Verdict, ...]:
    pos = {r.name: i for i, r in enumerate(records)}
    return tuple(sorted(rejected, key=lambda v: pos.get(v.name, 0)))
