"""Fisher's exact test and the Beta posterior against scipy and the literature; the stop rule."""

from __future__ import annotations

import math

import pytest

from immunity.tasks.deploy.significance import decide, fisher_exact, prob_b_beats_a

# (a_pass, a_fail, b_pass, b_fail): small and large, ties, zeros, lopsided margins.
TABLES = [
    (3, 1, 1, 3),  # Fisher's tea-tasting
    (1, 3, 3, 1),
    (8, 2, 1, 5),
    (0, 10, 10, 0),
    (10, 0, 0, 10),
    (0, 5, 1, 4),
    (5, 5, 5, 5),  # the observed table is the mode
    (10, 10, 11, 9),  # nearly tied
    (7, 3, 3, 7),  # symmetric: the opposite tail ties exactly
    (20, 0, 0, 20),
    (19, 1, 11, 9),
    (2, 30, 9, 24),
    (100, 3, 3, 1),
    (50, 50, 65, 35),
    (200, 10, 180, 30),
    (1500, 1500, 1500, 1500),  # large, tied
    (2000, 1000, 1000, 2000),  # large, p far below 1e-100
    (3000, 10, 2990, 20),
    (0, 5000, 5, 4995),
    (1000, 1000, 999, 1001),
]
ALTERNATIVES = ["two-sided", "less", "greater"]


@pytest.mark.parametrize("alternative", ALTERNATIVES)
@pytest.mark.parametrize("table", TABLES, ids=lambda t: "-".join(map(str, t)))
def test_fisher_matches_scipy(table: tuple[int, int, int, int], alternative: str) -> None:
    from scipy.stats import fisher_exact as scipy_fisher

    a_pass, a_fail, b_pass, b_fail = table
    expected = scipy_fisher([[a_pass, a_fail], [b_pass, b_fail]], alternative=alternative).pvalue
    got = fisher_exact(*table, alternative=alternative)
    assert got == pytest.approx(expected, rel=1e-9, abs=0)


@pytest.mark.parametrize(
    "table",
    [(0, 0, 3, 4), (3, 0, 4, 0), (0, 3, 0, 4), (0, 0, 0, 0), (2, 5, 0, 0)],
)
def test_a_zero_margin_gives_one_like_scipy(table: tuple[int, int, int, int]) -> None:
    from scipy.stats import fisher_exact as scipy_fisher

    for alternative in ALTERNATIVES:
        expected = scipy_fisher([table[:2], table[2:]], alternative=alternative).pvalue
        assert expected == 1.0
        assert fisher_exact(*table, alternative=alternative) == 1.0


def test_literature_values() -> None:
    # Fisher (1935), the lady tasting tea: 3 of 4 cups right.
    assert fisher_exact(3, 1, 1, 3) == pytest.approx(0.4857142857, rel=1e-9)
    assert fisher_exact(3, 1, 1, 3, alternative="greater") == pytest.approx(17 / 70, rel=1e-12)
    # All 4 right: 1 / C(8, 4) one-sided.
    assert fisher_exact(4, 0, 0, 4, alternative="greater") == pytest.approx(1 / 70, rel=1e-12)
    assert fisher_exact(4, 0, 0, 4) == pytest.approx(2 / 70, rel=1e-12)
    # Agresti, Categorical Data Analysis: the tea table's one-sided P = 0.243.
    assert round(fisher_exact(3, 1, 1, 3, alternative="greater"), 3) == 0.243


def test_fisher_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="negative"):
        fisher_exact(-1, 2, 3, 4)
    with pytest.raises(ValueError, match="alternative"):
        fisher_exact(1, 2, 3, 4, alternative="sideways")  # type: ignore[arg-type]


def _posterior_by_quadrature(a_pass: int, a_fail: int, b_pass: int, b_fail: int) -> float:
    """P(p_B > p_A) = ∫ f_A(x) · P(p_B > x) dx, over where A's density lives."""
    from scipy.integrate import quad
    from scipy.stats import beta

    a, b = beta(1 + a_pass, 1 + a_fail), beta(1 + b_pass, 1 + b_fail)
    low, high = a.ppf(1e-13), a.isf(1e-13)
    # The mean splits a peaked integrand so quad does not step over it.
    mean = a.mean()
    parts = [
        quad(lambda x: a.pdf(x) * b.sf(x), lo, hi, limit=400, epsabs=1e-12, epsrel=1e-10)[0]
        for lo, hi in ((low, mean), (mean, high))
    ]
    return math.fsum(parts)


@pytest.mark.parametrize(
    "counts",
    [
        (0, 0, 0, 0),
        (3, 1, 1, 3),
        (1, 3, 3, 1),
        (10, 5, 12, 3),
        (0, 20, 20, 0),
        (20, 0, 0, 20),
        (7, 7, 7, 7),
        (200, 100, 210, 90),
        (1500, 500, 1540, 460),
        (4000, 1000, 3950, 1050),
        (0, 3000, 1, 2999),
        (2500, 2500, 2400, 2600),
    ],
    ids=lambda t: "-".join(map(str, t)),
)
def test_posterior_matches_numerical_integration(counts: tuple[int, int, int, int]) -> None:
    expected = _posterior_by_quadrature(*counts)
    assert prob_b_beats_a(*counts) == pytest.approx(expected, abs=1e-6)


def test_posterior_closed_form_values_and_symmetry() -> None:
    # With uniform priors and no data both rates are uniform: a fair coin.
    assert prob_b_beats_a(0, 0, 0, 0) == pytest.approx(0.5, abs=1e-12)
    # One pass for B against nothing: Beta(2, 1) vs uniform → P = 2/3.
    assert prob_b_beats_a(0, 0, 1, 0) == pytest.approx(2 / 3, abs=1e-12)
    for counts in [(3, 1, 1, 3), (40, 2, 30, 12), (900, 100, 880, 120)]:
        a_pass, a_fail, b_pass, b_fail = counts
        swapped = prob_b_beats_a(b_pass, b_fail, a_pass, a_fail)
        assert prob_b_beats_a(*counts) + swapped == pytest.approx(1.0, abs=1e-9)
    # A Jeffreys-like prior cannot use the closed form: refused, not approximated.
    with pytest.raises(ValueError, match="whole"):
        prob_b_beats_a(1, 2, 3, 4, prior=(0.5, 0.5))


def test_posterior_with_a_stronger_prior_matches_quadrature() -> None:
    from scipy.integrate import quad
    from scipy.stats import beta

    a, b = beta(2 + 5, 3 + 4), beta(2 + 9, 3 + 1)
    expected = quad(lambda x: a.pdf(x) * b.sf(x), 0, 1, epsabs=1e-13)[0]
    assert prob_b_beats_a(5, 4, 9, 1, prior=(2, 3)) == pytest.approx(expected, abs=1e-9)


RULE = {"alpha": 0.05, "min_samples": 20, "max_samples": 60}


@pytest.mark.parametrize("method", ["fisher", "beta_binomial"])
def test_no_decision_below_the_minimum_sample_however_lopsided(method: str) -> None:
    decision = decide((0, 19), (19, 0), method=method, **RULE)
    assert not decision.stop and decision.winner is None
    assert decision.p_value is not None and decision.p_value < 1e-9  # reported, not acted on
    assert "minimum sample" in decision.reason
    assert not decide((0, 0), (0, 0), method=method, **RULE).stop


@pytest.mark.parametrize("method", ["fisher", "beta_binomial"])
@pytest.mark.parametrize(("a", "b", "winner"), [((2, 18), (19, 1), "B"), ((20, 0), (9, 11), "A")])
def test_a_significant_difference_stops_with_the_better_variant(
    method: str, a: tuple[int, int], b: tuple[int, int], winner: str
) -> None:
    decision = decide(a, b, method=method, **RULE)
    assert decision.stop and decision.winner == winner
    assert decision.p_value == pytest.approx(fisher_exact(*a, *b))
    assert decision.posterior == pytest.approx(prob_b_beats_a(*a, *b))


def test_the_method_decides_which_evidence_counts() -> None:
    # p ≈ 0.065 two-sided, while P(B > A) ≈ 0.98: Fisher waits, the posterior is convinced.
    a, b = (12, 8), (18, 2)
    fisher = decide(a, b, method="fisher", **RULE)
    bayes = decide(a, b, method="beta_binomial", **RULE)
    assert fisher.p_value is not None and fisher.p_value >= 0.05 and not fisher.stop
    assert bayes.posterior is not None and bayes.posterior > 0.95
    assert bayes.stop and bayes.winner == "B"


def test_the_maximum_sample_stops_inconclusive_only_when_both_reach_it() -> None:
    assert not decide((30, 29), (31, 28), method="fisher", **RULE).stop
    assert not decide((60, 60), (20, 20), method="fisher", **RULE).stop
    done = decide((30, 30), (32, 28), method="fisher", **RULE)
    assert done.stop and done.winner is None and "inconclusive" in done.reason


def test_decide_refuses_a_nonsense_rule() -> None:
    with pytest.raises(ValueError, match="method"):
        decide((1, 1), (1, 1), method="vibes", **RULE)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_samples"):
        decide((1, 1), (1, 1), alpha=0.05, min_samples=50, max_samples=10)
