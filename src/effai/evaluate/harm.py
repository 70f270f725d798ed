"""Paired comparison of a compressed model with its base: who pays for the compression?

Hooker et al. 2019 ("What do compressed deep neural networks forget?") found that a small
drop in top-1 accuracy hides a large, concentrated loss on a few classes and examples. So
we look class by class (and slice by slice) at the *excess* drop: the group's accuracy
change minus the overall change. A group is flagged when its excess drop is both large
(`min_excess`) and statistically significant: a paired z-test on the per-example change
(+1 fixed, -1 broken, 0 unchanged), Bonferroni-corrected over the groups tested.
The examples the base got right and the compressed model now gets wrong are the
compression-identified exemplars (CIEs) worth looking at by hand.
"""

from __future__ import annotations

import math
from statistics import NormalDist

from effai.errors import InputError
from effai.results.evaluation import GroupHarm, Harm


def compare(base, variant, *, slices=None, alpha: float = 0.05, min_excess: float = 0.02) -> Harm:
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
    z_crit = NormalDist().inv_cdf(1 - alpha / (2 * max(tested, 1)))

    def rows(groups):
        return [_group(name, idx, ok_b, ok_v, change, overall, z_crit, min_excess) for name, idx in groups.items() if idx]

    return Harm(
        overall_delta=overall,
        classes=rows(class_groups),
        slices=rows(slice_groups),
        exemplars=[i for i, d in enumerate(change) if d < 0],
        fixed=[i for i, d in enumerate(change) if d > 0],
        changed=sum(p != q for p, q in zip(b["predictions"], v["predictions"], strict=True)),
    )


def _group(name, idx, ok_b, ok_v, change, overall, z_crit, min_excess) -> GroupHarm:
    n = len(idx)
    d = [change[i] for i in idx]
    delta = sum(d) / n
    var = sum((x - delta) ** 2 for x in d) / max(n - 1, 1)
    # The 1/n term keeps the test honest when every example moved the same way (var = 0).
    se = math.sqrt((var + 1.0 / n) / n)
    excess = delta - overall
    z = excess / se
    return GroupHarm(name=name, n=n, base=sum(ok_b[i] for i in idx) / n, variant=sum(ok_v[i] for i in idx) / n,
                     delta=delta, excess=excess, z=z, flagged=bool(excess < -min_excess and z < -z_crit))


def _as_dict(ev) -> dict:
    return ev if isinstance(ev, dict) else ev.to_dict()
