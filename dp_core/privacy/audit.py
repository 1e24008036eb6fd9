"""Empirical lower bounds on ε from release counts (certificates note §8.3, (33)).

Fix neighbours (D, D′) and pre-registered test sets S_1..S_s, run T independent releases on D
and T′ on D′, and count the hits k_i and k′_i of each set. Clopper–Pearson intervals turn the
counts into a statistically valid lower bound on the privacy loss: with probability ≥ 1 − a
over the releases, :func:`epsilon_lower_bound` does not exceed the mechanism's true ε. An audit
can refute a certificate (ε_lb > certified ε) but never prove one; its power for violations
confined to low-mass regions is poor (§8.3), so the PDE reference stays the primary check.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats

from dp_core.errors import InvalidParameter

__all__ = ["clopper_pearson", "epsilon_lower_bound"]


def _check_level(a: float) -> None:
    if not (isinstance(a, int | float) and 0 < a < 1):
        raise InvalidParameter("a", "must lie in (0, 1)")


def _check_counts(k: int, n: int, field: str) -> None:
    if not (isinstance(n, int) and n >= 1):
        raise InvalidParameter(field, "the number of releases must be a positive integer")
    if not (isinstance(k, int) and 0 <= k <= n):
        raise InvalidParameter(field, "hit counts must be integers in [0, releases]")


def clopper_pearson(k: int, n: int, a: float) -> tuple[float, float]:
    """Two-sided Clopper–Pearson interval at level a for k successes in n trials (33).

    Returns ``(BetaInv(a/2; k, n−k+1), BetaInv(1−a/2; k+1, n−k))``, with 0 for k = 0 and 1
    for k = n; each side fails with probability at most a/2.
    """
    _check_counts(k, n, "k")
    _check_level(a)
    lo = 0.0 if k == 0 else float(stats.beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - a / 2, k + 1, n - k))
    return lo, hi


def epsilon_lower_bound(
    k: int | Sequence[int],
    T: int,
    k_prime: int | Sequence[int],
    T_prime: int,
    a: float,
    delta: float = 0.0,
) -> float:
    """Lower confidence bound on ε from hit counts on D and D′ (33), both orders, Bonferroni.

    Parameters
    ----------
    k, k_prime : int or sequence of int (same length s)
        Hits of each pre-registered set S_i among the T releases on D, resp. T′ on D′.
    T, T_prime : int
        Numbers of releases on D and D′.
    a : float in (0, 1)
        Family-wise error level: the returned bound exceeds the true ε with probability ≤ a.
    delta : float in [0, 1)
        The δ of (ε, δ); 0 for pure DP.

    Returns
    -------
    float
        max over sets i and both orders of log((p_lo − δ)/p′_hi), where p_lo is the lower
        Clopper–Pearson bound of one dataset's hit rate and p′_hi the upper bound of the
        other's; 0 when no term is positive. Each of the 2s (set, order) tests runs at
        two-sided level a/(2s), so the union of all 4s one-sided failure events has
        probability ≤ a (the note's "both orders and Bonferroni over sets"; correcting for
        the orders too is the conservative reading).
    """
    hits = [k] if isinstance(k, int) else list(k)
    hits_prime = [k_prime] if isinstance(k_prime, int) else list(k_prime)
    if not hits or len(hits) != len(hits_prime):
        raise InvalidParameter("k_prime", "need one count per set on both datasets")
    _check_level(a)
    if not (isinstance(delta, int | float) and 0 <= delta < 1):
        raise InvalidParameter("delta", "must lie in [0, 1)")
    level = a / (2 * len(hits))
    best = 0.0
    for k_i, k_prime_i in zip(hits, hits_prime, strict=True):
        _check_counts(k_i, T, "k")
        _check_counts(k_prime_i, T_prime, "k_prime")
        for (k1, n1), (k2, n2) in (
            ((k_i, T), (k_prime_i, T_prime)),
            ((k_prime_i, T_prime), (k_i, T)),
        ):
            p_lo = clopper_pearson(k1, n1, level)[0]
            p_hi = clopper_pearson(k2, n2, level)[1]
            if p_lo - delta > 0:
                best = max(best, math.log((p_lo - delta) / p_hi))
    return best
