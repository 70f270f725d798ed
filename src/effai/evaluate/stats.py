"""Is a difference in accuracy real? Intervals and paired tests for classifiers scored on the same
test examples (and, across training seeds, on the same examples again).

- `accuracy_interval`: Wilson score interval of one accuracy (good coverage near 0 and 1, unlike
  the normal approximation).
- `mcnemar`: exact (or mid-p) McNemar test of two classifiers on the same examples: only the
  examples where they disagree carry information.
- `paired_bootstrap`: interval and p-value for the accuracy difference, resampling test examples
  and, given several training seeds, the seeds too (so seed-to-seed variation counts as noise).
- `min_detectable_drop`: the smallest accuracy drop a test on n examples finds with the given power
  (how small a per-class harm can be and still be seen).

Inputs are per-example correctness: a sequence of bools or 0/1 values, shape (examples,) or
(seeds, examples). Results are frozen dataclasses.

>>> a = [1] * 90 + [0] * 10
>>> b = [1] * 80 + [0] * 20
>>> round(accuracy_interval(a).low, 3)
0.826
>>> mcnemar(a, b).a_only, mcnemar(a, b).b_only
(10, 0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from effai.errors import InputError

__all__ = ["BootstrapResult", "Interval", "McNemarResult", "accuracy_interval", "correctness", "holm", "mcnemar",
           "min_detectable_drop", "paired_bootstrap"]


@dataclass(frozen=True)
class Interval:
    """An estimate with its two-sided confidence interval."""

    estimate: float
    low: float
    high: float
    confidence: float
    n: int
    method: str


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's test on paired correctness. `a_only`: examples only A gets right; `b_only`: only B."""

    n: int
    a_only: int
    b_only: int
    p_value: float
    mid_p: bool

    @property
    def difference(self) -> float:
        """Accuracy of B minus accuracy of A."""
        return (self.b_only - self.a_only) / self.n


@dataclass(frozen=True)
class BootstrapResult:
    """Paired bootstrap of accuracy(B) - accuracy(A): the observed difference, its percentile
    interval, and the two-sided bootstrap p-value of "no difference"."""

    difference: float
    low: float
    high: float
    p_value: float
    confidence: float
    n_resamples: int
    n_examples: int
    n_seeds: int


def correctness(predictions, labels) -> np.ndarray:
    """Per-example correctness (bool) from predicted and true labels of the same shape.

    >>> correctness([0, 1, 2], [0, 1, 1]).tolist()
    [True, True, False]
    """
    p, y = np.asarray(predictions), np.asarray(labels)
    if p.shape[-1:] != y.shape[-1:]:
        raise InputError(f"correctness: {p.shape[-1:]} predictions for {y.shape[-1:]} labels")
    return p == y


def _as_correct(x, name: str, ndim: tuple[int, ...] = (1,)) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim not in ndim or a.size == 0:
        raise InputError(f"{name}: expected a non-empty array of shape {' or '.join(_shape(d) for d in ndim)}, "
                         f"got shape {a.shape}")
    if a.dtype != bool and not np.isin(a, (0, 1)).all():
        raise InputError(f"{name}: expected per-example correctness (bools or 0/1 values)")
    return a.astype(bool)


def _shape(ndim: int) -> str:
    return "(examples,)" if ndim == 1 else "(seeds, examples)"


def _pair(a, b, ndim: tuple[int, ...] = (1,)) -> tuple[np.ndarray, np.ndarray]:
    ca, cb = _as_correct(a, "correct_a", ndim), _as_correct(b, "correct_b", ndim)
    if ca.shape != cb.shape:
        raise InputError(f"correct_a and correct_b: shapes {ca.shape} and {cb.shape} differ (same examples needed)")
    return ca, cb


def _check_confidence(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise InputError(f"confidence={confidence}: expected a fraction in (0, 1)")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def accuracy_interval(correct, confidence: float = 0.95) -> Interval:
    """Wilson score interval for the accuracy of per-example correctness `correct`.

    >>> iv = accuracy_interval([True] * 9_000 + [False] * 1_000)
    >>> iv.estimate, round(iv.low, 4), round(iv.high, 4)
    (0.9, 0.894, 0.9057)
    """
    from scipy.stats import binomtest

    c = _as_correct(correct, "correct")
    _check_confidence(confidence)
    n, k = c.size, int(c.sum())
    ci = binomtest(k, n).proportion_ci(confidence, method="wilson")
    return Interval(k / n, float(ci.low), float(ci.high), confidence, n, "wilson")


def mcnemar(correct_a, correct_b, mid_p: bool = True) -> McNemarResult:
    """Exact McNemar test: a two-sided binomial test (p = 1/2) on the examples where A and B
    disagree. `mid_p` counts the observed split at half weight (p = 2 P(X < k) + P(X = k)), which
    keeps the test's size near alpha where the exact test is conservative (Fagerland et al. 2013).

    >>> r = mcnemar([1] * 30 + [0] * 70, [0] * 30 + [1] * 10 + [0] * 60)
    >>> r.a_only, r.b_only, round(r.p_value, 4), round(r.difference, 2)
    (30, 10, 0.0015, -0.2)
    >>> mcnemar([1, 0], [1, 0]).p_value   # no disagreement: no evidence
    1.0
    """
    from scipy.stats import binom

    ca, cb = _pair(correct_a, correct_b)
    a_only, b_only = int((ca & ~cb).sum()), int((~ca & cb).sum())
    m, k = a_only + b_only, min(a_only, b_only)
    p = 1.0
    if m:
        p = min(1.0, 2 * float(binom.cdf(k, m, 0.5)) - (float(binom.pmf(k, m, 0.5)) if mid_p else 0.0))
    return McNemarResult(ca.size, a_only, b_only, p, mid_p)


def paired_bootstrap(correct_a, correct_b, n_resamples: int = 10_000, confidence: float = 0.95,
                     seed: int = 0) -> BootstrapResult:
    """Bootstrap of accuracy(B) - accuracy(A) on paired correctness.

    Shape (examples,): test examples are resampled. Shape (seeds, examples), e.g. A and B trained
    from the same seeds and scored on the same test set: seeds and examples are resampled
    independently (a two-way bootstrap), so the interval holds training noise and test-set noise.
    The p-value is twice the share of resampled differences on the far side of zero.

    >>> a = [[1] * 80 + [0] * 20] * 3
    >>> b = [[1] * 90 + [0] * 10] * 3
    >>> r = paired_bootstrap(a, b, n_resamples=2_000)
    >>> round(r.difference, 2), r.low > 0, r.p_value < 0.01, r.n_seeds
    (0.1, True, True, 3)
    """
    ca, cb = _pair(correct_a, correct_b, ndim=(1, 2))
    _check_confidence(confidence)
    if n_resamples < 100:
        raise InputError(f"n_resamples={n_resamples}: expected >= 100")
    d = (cb.astype(np.int32) - ca.astype(np.int32)).reshape(-1, ca.shape[-1])  # (seeds, examples): -1, 0, +1
    seeds, n = d.shape
    rng = np.random.default_rng(seed)
    draws = []
    for start in range(0, n_resamples, 500):  # chunks keep the example weights at ~20 MB
        size = min(500, n_resamples - start)
        w = rng.multinomial(n, np.full(n, 1 / n), size=size).T  # (examples, size): how often each is drawn
        per_seed = d @ w  # (seeds, size)
        s = rng.multinomial(seeds, np.full(seeds, 1 / seeds), size=size)  # (size, seeds)
        draws.append((s * per_seed.T).sum(1) / (seeds * n))
    boot = np.concatenate(draws)
    tail = (1 - confidence) / 2
    low, high = np.quantile(boot, [tail, 1 - tail])
    p = min(1.0, 2 * min(float((boot <= 0).mean()), float((boot >= 0).mean())))
    return BootstrapResult(float(d.mean()), float(low), float(high), p, confidence, n_resamples, n, seeds)


def min_detectable_drop(n: int, accuracy: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest drop d in accuracy that a two-sided test at level `alpha` on `n` examples
    detects with probability `power`, for a group whose accuracy was `accuracy`: the solution of
    z_(1-alpha/2) * sqrt(p0 q0) + z_power * sqrt(p1 q1) = d * sqrt(n), p1 = p0 - d (normal
    approximation, one-sample test against the base accuracy). Per-class harm below this is
    invisible on this test set. When not even a drop to zero is detectable, `accuracy` itself is
    returned.

    >>> round(min_detectable_drop(1_050, 0.85), 4)   # one Fashion-MNIST class of a 10,500-image test set
    0.0316
    >>> min_detectable_drop(100, 0.85) > min_detectable_drop(10_000, 0.85)
    True
    """
    if n < 1:
        raise InputError(f"n={n}: expected >= 1 examples")
    if not 0 <= accuracy <= 1:
        raise InputError(f"accuracy={accuracy}: expected a fraction in [0, 1]")
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise InputError(f"alpha={alpha}, power={power}: expected fractions in (0, 1)")
    za, zb = NormalDist().inv_cdf(1 - alpha / 2), NormalDist().inv_cdf(power)
    p0 = accuracy

    def shortfall(d: float) -> float:  # > 0 while d is too small to detect
        p1 = p0 - d
        return za * math.sqrt(p0 * (1 - p0)) + zb * math.sqrt(p1 * (1 - p1)) - d * math.sqrt(n)

    lo, hi = 0.0, p0
    if shortfall(hi) > 0:
        return p0  # not even a drop to zero accuracy is detectable
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if shortfall(mid) > 0 else (lo, mid)
    return hi


def holm(p_values) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given): family-wise error held at alpha
    over the tests, less conservative than Bonferroni (statsmodels is not a dependency).

    >>> [round(p, 3) for p in holm([0.01, 0.04, 0.03])]
    [0.03, 0.06, 0.06]
    """
    ps = [float(p) for p in p_values]
    order = sorted(range(len(ps)), key=ps.__getitem__)
    out, running = [1.0] * len(ps), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
        out[i] = running
    return out
