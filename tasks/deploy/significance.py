"""Significance for fix experiments: Fisher's exact test, a Beta posterior, and the stop rule.

Pure Python (stdlib only). Fisher's p-values are computed with exact integers, so they are the
correctly rounded values of scipy.stats.fisher_exact's definition, ties included. The posterior
P(p_B > p_A) is Evan Miller's closed-form sum, term by term in logarithms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["Decision", "decide", "fisher_exact", "prob_b_beats_a"]

Alternative = Literal["two-sided", "greater", "less"]
Method = Literal["fisher", "beta_binomial"]

# scipy's tolerance for "as likely as the observed table" in the two-sided sum: 1 + 1e-14.
_TIE_SCALE = 10**14


def _weights(n1: int, n2: int, n: int) -> tuple[int, list[int]]:
    """Return the support's first value and comb(n1, x)·comb(n2, n − x) for each x in it."""
    lo, hi = max(0, n - n2), min(n, n1)
    left, right = math.comb(n1, lo), math.comb(n2, n - lo)
    weights = []
    for x in range(lo, hi + 1):
        weights.append(left * right)
        # Exact recurrences: comb(n1, x+1) and comb(n2, n-x-1) from their neighbours.
        left = left * (n1 - x) // (x + 1)
        right = right * (n - x) // (n2 - n + x + 1)
    return lo, weights


def fisher_exact(
    a_pass: int, a_fail: int, b_pass: int, b_fail: int, alternative: Alternative = "two-sided"
) -> float:
    """Return Fisher's exact p-value for [[a_pass, a_fail], [b_pass, b_fail]] (scipy's definition).

    `less`: the odds ratio is below 1 (A passes less often than B); `greater`: above 1.
    """
    table = (a_pass, a_fail, b_pass, b_fail)
    if any(count < 0 for count in table):
        raise ValueError(f"counts must not be negative: {table}")
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be two-sided, greater or less, not {alternative!r}")
    n1, n2, n = a_pass + a_fail, b_pass + b_fail, a_pass + b_pass
    if 0 in (n1, n2, n, a_fail + b_fail):
        return 1.0
    # X = a_pass is hypergeometric given the margins: P(X = x) = weight(x) / comb(n1 + n2, n).
    lo, weights = _weights(n1, n2, n)
    total = sum(weights)
    observed = a_pass - lo
    if alternative == "less":
        return min(sum(weights[: observed + 1]) / total, 1.0)
    if alternative == "greater":
        return min(sum(weights[observed:]) / total, 1.0)
    mode = (n + 1) * (n1 + 1) // (n1 + n2 + 2) - lo
    w_obs, w_mode = weights[observed], weights[mode]
    if abs(w_obs - w_mode) * _TIE_SCALE <= max(w_obs, w_mode):
        return 1.0
    bound = w_obs * (_TIE_SCALE + 1)  # pmf(x) compared with pmf(observed)·(1 + 1e-14)
    if observed < mode:
        # The observed tail, and beyond the mode what is less likely (scipy: strictly less).
        other = sum(w for w in weights[mode:] if w * _TIE_SCALE < bound)
        tail = sum(weights[: observed + 1])
    else:
        other = sum(w for w in weights[: mode + 1] if w * _TIE_SCALE <= bound)
        tail = sum(weights[observed:])
    return min((tail + other) / total, 1.0)


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _miller(alpha_a: float, beta_a: float, alpha_b: int, beta_b: float) -> float:
    """P(p_B > p_A) for Beta(alpha_a, beta_a) and Beta(alpha_b, beta_b), alpha_b integral."""
    base = _log_beta(alpha_a, beta_a)
    terms = (
        math.exp(
            _log_beta(alpha_a + i, beta_a + beta_b)
            - math.log(beta_b + i)
            - _log_beta(1 + i, beta_b)
            - base
        )
        for i in range(alpha_b)
    )
    return math.fsum(terms)


def prob_b_beats_a(
    a_pass: int,
    a_fail: int,
    b_pass: int,
    b_fail: int,
    prior: tuple[float, float] = (1.0, 1.0),
) -> float:
    """Return P(p_B > p_A) under independent Beta(prior + passes, prior + failures) posteriors.

    Exact: Evan Miller's closed form, summed over the fewest terms it allows. That needs one of
    the posterior parameters to be a whole number, so the prior's two values must be whole.
    """
    counts = (a_pass, a_fail, b_pass, b_fail)
    if any(count < 0 for count in counts):
        raise ValueError(f"counts must not be negative: {counts}")
    if min(prior) <= 0 or any(float(value) != int(value) for value in prior):
        raise ValueError(f"the prior must be two positive whole numbers, not {prior}")
    alpha0, beta0 = int(prior[0]), int(prior[1])
    a_s, a_f = alpha0 + a_pass, beta0 + a_fail
    b_s, b_f = alpha0 + b_pass, beta0 + b_fail
    # Four forms of one identity: sum over B's successes, A's successes, or the failures
    # (p > q ⇔ 1 − p < 1 − q); the shortest sum is the fastest and loses the least.
    forms = {
        b_s: lambda: _miller(a_s, a_f, b_s, b_f),
        a_s: lambda: 1.0 - _miller(b_s, b_f, a_s, a_f),
        a_f: lambda: _miller(b_f, b_s, a_f, a_s),
        b_f: lambda: 1.0 - _miller(a_f, a_s, b_f, b_s),
    }
    value = forms[min(forms)]()
    return min(max(value, 0.0), 1.0)


@dataclass(frozen=True)
class Decision:
    """Whether an experiment stops, who won, and the evidence (`posterior` is P(p_B > p_A))."""

    stop: bool
    winner: Literal["A", "B"] | None
    p_value: float | None
    posterior: float | None
    reason: str


def _rate(counts: tuple[int, int]) -> float:
    passed, failed = counts
    return passed / (passed + failed)


def decide(
    a: tuple[int, int],
    b: tuple[int, int],
    *,
    method: Method = "fisher",
    alpha: float,
    min_samples: int,
    max_samples: int,
) -> Decision:
    """Return the decision after the (passed, failed) counts of variants A and B so far.

    Nothing is decided before both variants have `min_samples` runs: looking after every round
    inflates false positives, and a minimum sample is what keeps an early fluke from winning.
    """
    if method not in ("fisher", "beta_binomial"):
        raise ValueError(f"method must be fisher or beta_binomial, not {method!r}")
    if not 0 < alpha < 1 or min_samples < 1 or max_samples < min_samples:
        raise ValueError("need 0 < alpha < 1 and 1 <= min_samples <= max_samples")
    n_a, n_b = sum(a), sum(b)
    if min(n_a, n_b) == 0:
        return Decision(False, None, None, None, "no runs yet")
    p_value = fisher_exact(*a, *b)
    posterior = prob_b_beats_a(*a, *b)
    rates = f"A {_rate(a):.0%} of {n_a}, B {_rate(b):.0%} of {n_b}"
    if min(n_a, n_b) < min_samples:
        reason = f"below the minimum sample of {min_samples} per variant ({rates})"
        return Decision(False, None, p_value, posterior, reason)
    better: Literal["A", "B"] | None = None
    if _rate(a) != _rate(b):
        better = "B" if _rate(b) > _rate(a) else "A"
    if method == "fisher":
        significant = p_value < alpha
        evidence = f"p = {p_value:.3g} < {alpha:g}"
    else:
        significant = posterior > 1 - alpha or posterior < alpha
        evidence = f"P(B > A) = {posterior:.3g}"
    if significant and better is not None:
        return Decision(
            True, better, p_value, posterior, f"{better} is better: {evidence} ({rates})"
        )
    if n_a >= max_samples and n_b >= max_samples:
        reason = f"inconclusive at the maximum sample of {max_samples} per variant ({rates})"
        return Decision(True, None, p_value, posterior, reason)
    return Decision(False, None, p_value, posterior, f"not significant yet ({rates})")
