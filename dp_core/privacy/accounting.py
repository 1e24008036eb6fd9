"""Privacy accounting: conversions between DP notions and composition.

Owns the pure functions of the certificates note §4–§5, formulas (15)–(27):

- bounded range β → Rényi (15), KL (16), hockey-stick (17), zCDP (18);
- pure ε → Rényi (19), zCDP and KL;
- RDP / zCDP → (ε, δ) (20)–(21) (the RDP conversion is opacus' ``get_privacy_spent``);
- basic (23), advanced (24) and optimal homogeneous (25) composition.

The ledger admission rule (27) built on these lives in :mod:`dp_core.privacy.ledger`.

Every function takes public numbers only (privacy parameters, orders, counts); none sees a
record. Every returned privacy parameter is an upper bound: where floating-point rounding could
push a closed form below its exact value, a few-ulp margin is added and the result is capped by
a simpler bound that is always valid. Importing this module is cheap: opacus (and torch) are
imported inside :func:`rdp_to_approx_dp` only, or ahead of time by :func:`preload_opacus` (the
service does that in a background thread), both under one lock: two threads importing torch's
package tree at once can make Python's import machinery raise ``_DeadlockError`` in one.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Callable, Sequence

from dp_core.errors import InvalidParameter
from dp_core.privacy._checks import count, delta_value, nonneg, order

__all__ = [
    "DEFAULT_ORDERS",
    "compose_advanced",
    "compose_basic",
    "compose_optimal_epsilon",
    "compose_optimal_homogeneous",
    "hockey_stick_from_beta",
    "kl_from_beta",
    "kl_from_pure",
    "preload_opacus",
    "rdp_to_approx_dp",
    "renyi_from_beta",
    "renyi_from_pure",
    "zcdp_from_beta",
    "zcdp_from_pure",
    "zcdp_to_approx_dp",
    "zcdp_to_approx_dp_simple",
]

DEFAULT_ORDERS: tuple[float, ...] = tuple(
    [1.0 + x / 10.0 for x in range(1, 100)] + [float(a) for a in range(12, 64)] + [128.0, 256.0]
)
"""Rényi orders for (20)–(21): opacus' default grid extended with 128 and 256."""

_OPACUS_IMPORT = threading.Lock()


def preload_opacus() -> Callable[..., tuple[float, float]]:
    """Import opacus' ``get_privacy_spent`` (torch: seconds) under a lock and return it.

    Thread-safe and cheap after the first call; see the module docstring for why the lock.
    """
    with _OPACUS_IMPORT:
        from opacus.accountants.analysis.rdp import get_privacy_spent

    return get_privacy_spent  # type: ignore[no-any-return]


_U = 2.0**-52  # double-precision unit roundoff (upper bound)
_OVERFLOW_EXPONENT = 700.0  # expm1(x) overflows at x ≈ 709.78
_GRID_END_WARNING = "Optimal order is the"


# --------------------------------------------------------------------------- β and pure ε


def _excess(alpha: float, beta: float, A: float, B: float) -> tuple[float, float]:
    """``G = A − αB = expm1(αβ) − α·expm1(β) > 0`` and a bound on its relative rounding error.

    Three cancellation-free forms: direct subtraction when ``αB ≤ A/2``; for β ≥ 1
    ``e^β·expm1((α−1)β) − (α−1)B`` (the first term is ≥ β/(1−e^{−β}) ≥ 1.58 times the second);
    otherwise (then αβ < 3) the positive series ``Σ_{n≥2} (αβ)^n/n! · (1 − α^{1−n})``.
    """
    x = alpha * beta
    err = (256.0 + 4.0 * x) * _U  # expm1 of a rounded argument x loses up to (x + 1) ulp
    if alpha * B <= 0.5 * A:
        return A - alpha * B, err
    if beta >= 1.0:
        return math.exp(beta) * math.expm1((alpha - 1.0) * beta) - (alpha - 1.0) * B, err
    log_alpha = math.log1p(alpha - 1.0)
    u, total = x, 0.0
    for n in range(2, 200):
        u *= x / n
        term = u * -math.expm1(-(n - 1) * log_alpha)
        total += term
        if n > x and term <= 1e-17 * total:
            break
    return total, err


def renyi_from_beta(beta: float, alpha: float) -> float:
    """Rényi divergence of order α of a β-bounded-range mechanism, formula (15).

    With ``A = e^{αβ} − 1``, ``B = e^β − 1`` and the worst two-point weight
    ``p* = (A − αB)/((α−1)AB)``, the bound is ``[log(1+p*A) − α log(1+p*B)]/(α−1)``. It is
    evaluated in the equivalent form ``α·log1p(G/(αB))/(α−1) − log1p(G/((α−1)B))`` with
    ``G = A − αB`` computed without cancellation, plus a bound on the rounding error, and capped
    by ``min(β, αβ²/8)`` (always valid). For ``αβ > 700`` (overflow) the cap itself is returned.

    Parameters
    ----------
    beta : float
        Bounded-range parameter β ≥ 0 (sup of the oscillation of the log density ratio).
    alpha : float
        Rényi order α > 1; ``math.inf`` gives D_∞ = β.

    Returns
    -------
    float
        An upper bound on D_α for every ordered neighbouring pair; 0 at β = 0.
    """
    beta = nonneg("beta", beta)
    alpha = order("alpha", alpha)
    if beta == 0.0:
        return 0.0
    if math.isinf(alpha):
        return beta
    cap = min(beta, alpha * beta * beta / 8.0 * (1.0 + 4.0 * _U))
    if alpha * beta > _OVERFLOW_EXPONENT:
        return cap
    A, B = math.expm1(alpha * beta), math.expm1(beta)
    G, err = _excess(alpha, beta, A, B)
    t1 = alpha * math.log1p(G / (alpha * B)) / (alpha - 1.0)
    t2 = math.log1p(G / ((alpha - 1.0) * B))
    # log1p(r) moves by at most e·log1p(r) when r has relative error e (r/(1+r) ≤ log1p(r)).
    value = t1 - t2 + (err + 16.0 * _U) * (t1 + t2)
    return min(max(value, 0.0), cap)


def _series_x_minus_log1p(x: float) -> float:
    """``x − log1p(x) = Σ_{m≥2} (−x)^m/m`` for 0 ≤ x < 1/2 (alternating, first term dominant)."""
    total, power = 0.0, -x
    for m in range(2, 200):  # |term| < 2^-m: 200 terms is far past double precision
        power *= -x
        term = power / m
        total += term
        if abs(term) <= 1e-18 * total:
            break
    return total


def kl_from_beta(beta: float) -> float:
    """KL divergence of a β-bounded-range mechanism, formula (16).

    ``c = β/(1 − e^{−β})``, ``KL ≤ c − 1 − log c ≤ β²/8``; computed with series where the
    direct form cancels, a rounding margin, and the cap ``min(β, β²/8)``.

    Parameters
    ----------
    beta : float
        Bounded-range parameter β ≥ 0.

    Returns
    -------
    float
        An upper bound on KL(ρ‖ρ′) for either order of a neighbouring pair.
    """
    beta = nonneg("beta", beta)
    if beta == 0.0:
        return 0.0
    one_minus = -math.expm1(-beta)  # 1 − e^{−β}
    if beta < 1.0:  # β + expm1(−β) = Σ_{n≥2} (−β)^n/n!, alternating and decreasing
        numerator, term = 0.0, -beta
        for n in range(2, 60):
            term *= -beta / n
            numerator += term
            if abs(term) <= 1e-18 * numerator:
                break
    else:
        numerator = beta - one_minus
    x = numerator / one_minus  # c − 1
    if x < 0.5:
        value = _series_x_minus_log1p(x) * (1.0 + 64.0 * _U)
    else:
        value = x - math.log1p(x) + 64.0 * _U * (x + math.log1p(x))
    return min(value, beta * beta / 8.0, beta)


def _log_expm1(x: float) -> float:
    """``log(e^x − 1)`` for x > 0, stable at both ends."""
    return x + math.log(-math.expm1(-x))


def hockey_stick_from_beta(beta: float, eps_prime: float) -> float:
    """Hockey-stick divergence δ(ε′) of a β-bounded-range mechanism, formula (17).

    ``δ(ε′) ≤ e^{ε′}(e^{(β−ε′)/2} − 1)²/(e^β − 1)`` for 0 ≤ ε′ < β and 0 for ε′ ≥ β; at ε′ = 0
    this is the total-variation bound tanh(β/4). Evaluated in log space (no overflow).

    Parameters
    ----------
    beta : float
        Bounded-range parameter β ≥ 0.
    eps_prime : float
        Target ε′ ≥ 0.

    Returns
    -------
    float
        δ such that the mechanism is (ε′, δ)-DP, in [0, 1).
    """
    beta = nonneg("beta", beta)
    eps_prime = nonneg("eps_prime", eps_prime, allow_inf=True)
    if eps_prime >= beta:
        return 0.0
    half_gap = max(0.5 * (beta - eps_prime), math.ulp(0.0))  # > 0 even if the halving underflows
    log_value = eps_prime + 2.0 * _log_expm1(half_gap) - _log_expm1(beta)
    return min(math.exp(log_value) * (1.0 + 64.0 * _U), 1.0)


def zcdp_from_beta(beta: float) -> float:
    """zCDP parameter ρ = β²/8 of a β-bounded-range mechanism, formula (18)."""
    beta = nonneg("beta", beta)
    return beta * beta / 8.0


def renyi_from_pure(eps: float, alpha: float) -> float:
    """Rényi divergence of order α of a pure ε-DP mechanism, formula (19).

    Randomized-response dominance: ``D_α ≤ log[(e^{αε} + e^{(1−α)ε})/(1 + e^ε)]/(α−1)``,
    evaluated as ``log(cosh(b + h)/cosh(b))/(α−1)`` with ``b = ε/2``, ``h = (α−1)ε``, i.e.
    ``log1p(2 sinh²(h/2) + tanh(b) sinh(h))/(α−1)`` (all terms positive, no cancellation even
    as α → 1), with a rounding margin and the cap ``min(ε, αε²/2)`` (D_∞ and zCDP, both valid).

    Parameters
    ----------
    eps : float
        Pure-DP parameter ε ≥ 0 (no bounded-range structure assumed).
    alpha : float
        Rényi order α > 1; ``math.inf`` gives ε.

    Returns
    -------
    float
        An upper bound on D_α for every neighbouring pair.
    """
    eps = nonneg("eps", eps)
    alpha = order("alpha", alpha)
    if eps == 0.0:
        return 0.0
    if math.isinf(alpha):
        return eps
    h, tb = (alpha - 1.0) * eps, math.tanh(0.5 * eps)
    if h < 20.0:
        sh = math.sinh(0.5 * h)
        log_ratio = math.log1p(2.0 * sh * sh + tb * math.sinh(h))
    else:
        log_ratio = h - math.log(2.0) + math.log1p(math.exp(-2.0 * h) - tb * math.expm1(-2.0 * h))
    value = log_ratio / (alpha - 1.0) * (1.0 + 64.0 * _U)
    return min(value, eps, alpha * eps * eps / 2.0 * (1.0 + 4.0 * _U))


def zcdp_from_pure(eps: float) -> float:
    """zCDP parameter ρ = ε²/2 of a pure ε-DP mechanism (Bun–Steinke), note (19)."""
    eps = nonneg("eps", eps)
    return eps * eps / 2.0


def kl_from_pure(eps: float) -> float:
    """KL bound ε·tanh(ε/2) of a pure ε-DP mechanism, note (19)."""
    eps = nonneg("eps", eps)
    return eps * math.tanh(0.5 * eps)


# --------------------------------------------------------------------------- to (ε, δ)


def rdp_to_approx_dp(
    rdp: Sequence[float], delta: float, orders: Sequence[float] = DEFAULT_ORDERS
) -> tuple[float, float]:
    """Convert an RDP curve to (ε, δ)-DP, formula (20).

    ``ε = min_α [τ(α) + log((α−1)/α) − (log δ + log α)/(α−1)]``, clamped at ≥ 0, computed by
    ``opacus.accountants.analysis.rdp.get_privacy_spent`` (imported here, not at module import).
    opacus warns when the minimiser is the first or last order; that warning is caught (not
    emitted) and is instead visible in the result: if the returned order is ``orders[0]`` or
    ``orders[-1]``, a wider grid could give a smaller ε. The ε returned is valid either way,
    only possibly loose. Any other warning is re-emitted. The warning filter is swapped with
    ``warnings.catch_warnings``, which is process-global while the call runs.

    Parameters
    ----------
    rdp : sequence of float, shape (n,)
        τ(α) ≥ 0 at each order (``inf`` allowed).
    delta : float
        Target δ in (0, 1).
    orders : sequence of float, shape (n,)
        Rényi orders α > 1; defaults to :data:`DEFAULT_ORDERS`.

    Returns
    -------
    tuple of float
        ``(ε, α*)``: ε ≥ 0 and the minimising order.
    """
    delta = delta_value("delta", delta, allow_zero=False)
    order_list = [order("orders", a) for a in orders]
    rdp_list = [nonneg("rdp", t, allow_inf=True) for t in rdp]
    if not order_list or len(order_list) != len(rdp_list):
        raise InvalidParameter("rdp", "needs one value per order (and at least one order)")
    get_privacy_spent = preload_opacus()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        eps, best_order = get_privacy_spent(orders=order_list, rdp=rdp_list, delta=delta)
    for w in caught:
        if not (issubclass(w.category, UserWarning) and _GRID_END_WARNING in str(w.message)):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return max(float(eps), 0.0), float(best_order)


def zcdp_to_approx_dp(rho: float, delta: float, orders: Sequence[float] = DEFAULT_ORDERS) -> float:
    """Convert ρ-zCDP to (ε, δ)-DP via (20) with τ(α) = αρ, formula (21).

    Parameters
    ----------
    rho : float
        zCDP parameter ρ ≥ 0 (``inf`` gives ``inf``).
    delta : float
        Target δ in [0, 1); δ = 0 gives ``inf`` unless ρ = 0.
    orders : sequence of float
        Rényi orders for the minimisation; defaults to :data:`DEFAULT_ORDERS`.

    Returns
    -------
    float
        ε ≥ 0 with ρ-zCDP ⇒ (ε, δ)-DP.
    """
    rho = nonneg("rho", rho, allow_inf=True)
    delta = delta_value("delta", delta, allow_zero=True)
    if rho == 0.0:
        return 0.0
    if delta == 0.0 or math.isinf(rho):
        return math.inf
    return rdp_to_approx_dp([float(a) * rho for a in orders], delta, orders)[0]


def zcdp_to_approx_dp_simple(rho: float, delta: float) -> float:
    """Bun–Steinke conversion ``ε = ρ + 2√(ρ log(1/δ))``, note (21): valid, looser than (20)."""
    rho = nonneg("rho", rho, allow_inf=True)
    delta = delta_value("delta", delta, allow_zero=True)
    if rho == 0.0:
        return 0.0
    if delta == 0.0:
        return math.inf
    return rho + 2.0 * math.sqrt(rho * -math.log(delta))


# --------------------------------------------------------------------------- composition


def compose_basic(
    epsilons: Sequence[float], deltas: Sequence[float] | None = None
) -> tuple[float, float]:
    """Basic composition ``(Σεᵢ, Σδᵢ)``, formula (23); valid for adaptively chosen εᵢ (filters).

    Sums use ``math.fsum``; the δ sum is capped at 1 (a vacuous but true statement).

    Returns
    -------
    tuple of float
        ``(ε, δ)`` of the composition.
    """
    eps = [nonneg("epsilons", e, allow_inf=True) for e in epsilons]
    dels = [] if deltas is None else [delta_value("deltas", d, allow_zero=True) for d in deltas]
    if deltas is not None and len(dels) != len(eps):
        raise InvalidParameter("deltas", "needs one δ per ε")
    return math.fsum(eps), min(math.fsum(dels), 1.0)


def compose_advanced(eps: float, k: int, delta_prime: float) -> float:
    """Advanced composition (Dwork–Rothblum–Vadhan), formula (24).

    k-fold ε-DP is ``(ε√(2k log(1/δ′)) + kε(e^ε − 1), δ′)``-DP; returns that ε.
    """
    eps = nonneg("eps", eps)
    k = count("k", k)
    delta_prime = delta_value("delta_prime", delta_prime, allow_zero=False)
    return eps * math.sqrt(2.0 * k * -math.log(delta_prime)) + k * eps * math.expm1(eps)


def _rr_terms(eps: float, k: int) -> list[tuple[float, float]]:
    """``(log P(L = (k−2i)ε), (k−2i)ε)`` for the k-fold randomized-response loss L, i = 0..k."""
    log_norm = k * (eps + math.log1p(math.exp(-eps)))  # k·log(1 + e^ε)
    log_k_fact = math.lgamma(k + 1.0)
    return [
        (
            log_k_fact - math.lgamma(i + 1.0) - math.lgamma(k - i + 1.0) + (k - i) * eps - log_norm,
            (k - 2 * i) * eps,
        )
        for i in range(k + 1)
    ]


def _rrdelta_value(terms: list[tuple[float, float]], eps_prime: float) -> float:
    return math.fsum(
        math.exp(log_p) * -math.expm1(eps_prime - loss) for log_p, loss in terms if loss > eps_prime
    )


def compose_optimal_homogeneous(eps: float, k: int, eps_prime: float) -> float:
    """δ(ε′) of the optimal k-fold composition of ε-DP (Kairouz–Oh–Viswanath), formula (25).

    ``δ(ε′) = Σ_i C(k,i) e^{(k−i)ε}/(1+e^ε)^k · (1 − e^{ε′−(k−2i)ε})₊``, exact (k-fold
    randomized response dominates). Each term is ``exp(log weight) · (−expm1(ε′ − loss))`` with
    log-binomials from ``lgamma``, summed by ``math.fsum``: relative rounding error ≲ 1e-13 for
    k up to a few thousand. Cost O(k).

    Returns
    -------
    float
        δ in [0, 1) such that the composition is (ε′, δ)-DP, and no smaller δ is possible.
    """
    eps = nonneg("eps", eps)
    k = count("k", k)
    eps_prime = nonneg("eps_prime", eps_prime, allow_inf=True)
    if eps == 0.0 or k == 0:
        return 0.0
    return _rrdelta_value(_rr_terms(eps, k), eps_prime)


def compose_optimal_epsilon(eps: float, k: int, delta: float) -> float:
    """Smallest ε′ with δ(ε′) ≤ δ for (25), by bisection on [0, kε] (δ(·) is decreasing).

    Returns the upper end of the final bracket, so δ(result) ≤ δ holds for the computed δ
    inflated by a relative 1e-10 (covering its rounding); the bracket is ≤ 4 ulp wide.
    """
    eps = nonneg("eps", eps)
    k = count("k", k)
    delta = delta_value("delta", delta, allow_zero=True)
    if eps == 0.0 or k == 0:
        return 0.0
    hi = k * eps
    if delta == 0.0:
        return hi
    terms = _rr_terms(eps, k)

    def ok(eps_prime: float) -> bool:
        return _rrdelta_value(terms, eps_prime) * (1.0 + 1e-10) <= delta

    if ok(0.0):
        return 0.0
    lo = 0.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if hi - lo <= 4.0 * _U * hi or mid in (lo, hi):
            break
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi
