"""effai.evaluate.stats against independent references (scipy's binomial test, the power formula
it inverts, brute-force resampling) and on inputs that must be refused."""

from statistics import NormalDist

import numpy as np
import pytest
from scipy.stats import binomtest

from effai.errors import InputError
from effai.evaluate import stats


def pair(a_only: int, b_only: int, both: int = 50, neither: int = 20):
    a = [1] * a_only + [0] * b_only + [1] * both + [0] * neither
    b = [0] * a_only + [1] * b_only + [1] * both + [0] * neither
    return a, b


@pytest.mark.parametrize("a_only,b_only", [(30, 10), (3, 0), (7, 7), (0, 12)])
def test_exact_mcnemar_is_the_binomial_test_on_the_discordant_examples(a_only, b_only):
    a, b = pair(a_only, b_only)
    r = stats.mcnemar(a, b, mid_p=False)
    assert (r.a_only, r.b_only, r.n) == (a_only, b_only, len(a))
    assert r.p_value == pytest.approx(binomtest(min(a_only, b_only), a_only + b_only).pvalue)


def test_mid_p_is_smaller_than_exact_and_one_when_the_split_is_even():
    a, b = pair(30, 10)
    assert stats.mcnemar(a, b).p_value < stats.mcnemar(a, b, mid_p=False).p_value
    assert stats.mcnemar(*pair(7, 7)).p_value == pytest.approx(1.0)
    assert stats.mcnemar(*pair(0, 0)).p_value == 1.0
    assert stats.mcnemar(*pair(30, 10)).difference == pytest.approx(-20 / 110)


def test_wilson_interval_stays_inside_0_1_and_covers_the_estimate():
    iv = stats.accuracy_interval([True] * 20)
    assert iv.estimate == 1.0 and iv.high == 1.0 and 0.8 < iv.low < 0.85  # the normal approximation says [1, 1]
    wide, narrow = stats.accuracy_interval([1, 0] * 50), stats.accuracy_interval([1, 0] * 5000)
    assert wide.low < narrow.low < 0.5 < narrow.high < wide.high
    assert stats.accuracy_interval([1, 0] * 50, confidence=0.99).low < wide.low


def test_paired_bootstrap_matches_a_brute_force_resampling():
    rng = np.random.default_rng(1)
    a = rng.random(400) < 0.80
    b = rng.random(400) < 0.86
    r = stats.paired_bootstrap(a, b, n_resamples=4_000, seed=3)
    brute = [(b[i].mean() - a[i].mean()) for i in (rng.integers(0, 400, 400) for _ in range(4_000))]
    lo, hi = np.quantile(brute, [0.025, 0.975])
    assert r.difference == pytest.approx(b.mean() - a.mean())
    assert r.low == pytest.approx(lo, abs=0.01) and r.high == pytest.approx(hi, abs=0.01)
    assert r.n_seeds == 1 and r.n_examples == 400
    assert stats.paired_bootstrap(a, b, n_resamples=4_000, seed=3) == r  # seeded


def test_resampling_seeds_widens_the_interval_when_seeds_disagree():
    a = np.zeros((4, 1000), bool)
    b = np.zeros((4, 1000), bool)
    b[0, :60] = b[1, :50] = True  # two seeds gain 5-6 pp, two gain nothing
    one_level = stats.paired_bootstrap(a.reshape(1, -1), b.reshape(1, -1), n_resamples=2_000)
    two_level = stats.paired_bootstrap(a, b, n_resamples=2_000)
    assert one_level.difference == pytest.approx(two_level.difference)
    assert one_level.low > 0.02  # test examples alone: a clear gain
    assert two_level.low < one_level.low and two_level.p_value > one_level.p_value  # seeds count as noise


def test_no_difference_gives_a_large_p_value():
    rng = np.random.default_rng(0)
    a = rng.random((3, 2000)) < 0.85
    r = stats.paired_bootstrap(a, a, n_resamples=500)
    assert r.difference == 0 and r.p_value == 1.0 and r.low == r.high == 0


@pytest.mark.parametrize("n,acc", [(1050, 0.85), (200, 0.5), (10_000, 0.99)])
def test_min_detectable_drop_has_the_asked_power(n, acc):
    d = stats.min_detectable_drop(n, acc)
    za, z = NormalDist().inv_cdf(0.975), NormalDist()
    p1 = acc - d
    power = z.cdf((d * n**0.5 - za * (acc * (1 - acc)) ** 0.5) / (p1 * (1 - p1)) ** 0.5)
    assert power == pytest.approx(0.8, abs=1e-6)
    assert stats.min_detectable_drop(4 * n, acc) < d


@pytest.mark.parametrize("call,match", [
    (lambda: stats.mcnemar([1, 0, 1], [1, 0]), "shapes"),
    (lambda: stats.mcnemar([1, 2], [1, 0]), "correctness"),
    (lambda: stats.accuracy_interval([]), "non-empty"),
    (lambda: stats.accuracy_interval([1, 0], confidence=95), "confidence"),
    (lambda: stats.paired_bootstrap([1, 0], [0, 1], n_resamples=10), "n_resamples"),
    (lambda: stats.paired_bootstrap(np.ones((2, 2, 2)), np.ones((2, 2, 2))), "shape"),
    (lambda: stats.min_detectable_drop(0, 0.9), "n=0"),
    (lambda: stats.min_detectable_drop(10, 1.5), "accuracy"),
])
def test_bad_input_is_refused_with_the_argument_named(call, match):
    with pytest.raises(InputError, match=match):
        call()
