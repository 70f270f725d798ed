"""Paired comparison of a compressed model with its base: who pays for the compression?

Hooker et al. 2019 ("What do compressed deep neural networks forget?") found that a small
drop in top-1 accuracy hides a large, concentrated loss on a few classes and examples. So
we look class by class (and slice by slice). A group is flagged when it loses accuracy and
the paired test on its own examples says so: McNemar's test (mid-p) on the examples the
variant broke against those it fixed, Holm-corrected over the groups tested. Each group also
states the smallest drop the test could have detected at its n (`stats.min_detectable_drop`),
so "nothing flagged" on 50 images a class reads as what it is. The *excess* drop (the group's
change minus the overall change) and its z are kept to rank the worst groups.
The examples the base got right and the compressed model now gets wrong are the
compression-identified exemplars (CIEs) worth looking at by hand.
"""

from __future__ import annotations

import math

from effai.errors import InputError
from effai.evaluate import stats
from effai.results.evaluation import AccuracyInterval, GroupHarm, Harm, Paired


def compare(base, variant, *, slices=None, alpha: float = 0.05) -> Harm:
    """Compare two `Evaluation`s (or their dicts) of the same test set, example by example.

    >>> from effai.results import Evaluation
    >>> def ev(preds):
    ...     labels = [i % 2 for i in range(40)]
    ...     return Evaluation(40, 0, {}, [], [], 0, ["cat", "dog"], preds, labels)
    >>> base = ev([i % 2 for i in range(40)])      # perfect
    >>> broken = ev([0] * 40)                      # every dog is now a cat
    >>> h = compare(base, broken)
    >>> h.overall_delta, h.flagged, len(h.exemplars)
    (-0.5, ['dog'], 20)
    """
    b, v = _as_dict(base), _as_dict(variant)
    labels = b["labels"]
    if labels != v["labels"]:
        raise InputError("compare: the two evaluations are not of the same test set (labels differ)")
    ok_b = [p == t for p, t in zip(b["predictions"], labels, strict=True)]
    ok_v = [p == t for p, t in zip(v["predictions"], labels, strict=True)]
    change = [int(cv) - int(cb) for cb, cv in zip(ok_b, ok_v, strict=True)]  # +1 fixed, -1 broken
    overall = sum(change) / len(change)

    names = b["class_names"]
    class_groups = {names[c]: [i for i, t in enumerate(labels) if t == c] for c in range(len(names))}
    slice_groups: dict[str, list[int]] = {}
    if slices is not None:
        if len(slices) != len(labels):
            raise InputError(f"slices: {len(slices)} labels for {len(labels)} test examples")
        for i, s in enumerate(slices):
            slice_groups.setdefault(str(s), []).append(i)
    tested = sum(1 for g in list(class_groups.values()) + list(slice_groups.values()) if g)

    groups = [(kind, name, idx) for kind, gs in (("class", class_groups), ("slice", slice_groups))
              for name, idx in gs.items() if idx]
    rows = [_group(name, idx, ok_b, ok_v, change, overall, alpha / max(tested, 1)) for _, name, idx in groups]
    adjusted = stats.holm([g.p_value for g in rows])
    rows = [g.replace(p_value=p, flagged=bool(g.delta < 0 and p < alpha)) for g, p in zip(rows, adjusted, strict=True)]
    return Harm(
        overall_delta=overall,
        classes=[g for (kind, _, _), g in zip(groups, rows, strict=True) if kind == "class"],
        slices=[g for (kind, _, _), g in zip(groups, rows, strict=True) if kind == "slice"],
        exemplars=[i for i, d in enumerate(change) if d < 0],
        fixed=[i for i, d in enumerate(change) if d > 0],
        changed=sum(p != q for p, q in zip(b["predictions"], v["predictions"], strict=True)),
    )


def _group(name, idx, ok_b, ok_v, change, overall, mdd_alpha) -> GroupHarm:
    """The group's row; `p_value` unadjusted and `flagged` unset until `compare` corrects over the groups."""
    n = len(idx)
    d = [change[i] for i in idx]
    delta = sum(d) / n
    var = sum((x - delta) ** 2 for x in d) / max(n - 1, 1)
    # The 1/n term keeps the test honest when every example moved the same way (var = 0).
    se = math.sqrt((var + 1.0 / n) / n)
    excess = delta - overall
    z = excess / se
    base = sum(ok_b[i] for i in idx) / n
    test = stats.mcnemar([ok_b[i] for i in idx], [ok_v[i] for i in idx])
    return GroupHarm(name=name, n=n, base=base, variant=sum(ok_v[i] for i in idx) / n, delta=delta, excess=excess,
                     z=z, flagged=False, p_value=test.p_value, broken=test.a_only, fixed=test.b_only,
                     min_detectable_drop=stats.min_detectable_drop(n, base, alpha=mdd_alpha))


def _as_dict(ev) -> dict:
    return ev if isinstance(ev, dict) else ev.to_dict()


def paired(variant, other, against: str) -> Paired:
    """McNemar's test (mid-p) of `variant` against `other` (two `Evaluation`s of the same test set)."""
    v, o = _as_dict(variant), _as_dict(other)
    if v["labels"] != o["labels"]:
        raise InputError("paired: the two evaluations are not of the same test set (labels differ)")
    t = stats.mcnemar(stats.correctness(o["predictions"], o["labels"]), stats.correctness(v["predictions"], v["labels"]))
    return Paired(against=against, n=t.n, lost=t.a_only, gained=t.b_only, p_value=t.p_value)


def interval(evaluation, confidence: float = 0.95) -> AccuracyInterval:
    """The Wilson interval of an `Evaluation`'s accuracy."""
    e = _as_dict(evaluation)
    iv = stats.accuracy_interval(stats.correctness(e["predictions"], e["labels"]), confidence)
    return AccuracyInterval(iv.low, iv.high, confidence, iv.method)
