"""Privacy certificates of a release: scope, bound, assumptions and every derived value.

* ``mean_field`` scope (SHK): the per-sample bounded-range parameter is route C,
  (9) ``β_C(t) = λΔ_osc + 2 e^{-t} λU`` — public quantities only (privacy rule 2). From β:
  pure ε = β; Rényi (15); KL (16); hockey-stick δ(ε′) (17); zCDP β²/8 (18).
* ``exact`` scope: mechanisms that are DP as implemented (note §7.3); the per-sample value is
  the implemented ε (ε-BR for the exponential mechanism, so the same conversions apply with
  β = ε; permute-and-flip is only ε-DP and uses (19) and ε²/2).

m samples of one release count as m releases (note §4): pure mβ, zCDP mβ²/8, Rényi m·D_α, KL
m·KL, and the whole release's (ε, δ) from the composed Rényi curve by (20) (opacus). Nothing in a
certificate depends on the records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from dp_core.errors import InvalidParameter
from dp_core.privacy import accounting
from dp_core.privacy.utilities.base import Sensitivity

__all__ = [
    "MEAN_FIELD_ASSUMPTIONS",
    "REPORTED_ORDERS",
    "Certificate",
    "PrivacyValues",
    "exact_certificate",
    "mean_field_certificate",
    "route_c_beta",
]

REPORTED_ORDERS: tuple[float, ...] = (1.5, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
"""Rényi orders listed in a certificate (the (ε, δ) conversion uses the full opacus grid)."""
REPORTED_HOCKEY_STICK: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)
REFERENCE_DELTA = 1e-6
"""δ at which (ε, δ) is reported when the request itself charges no δ."""

ROUTE_C = "route C: potential-independent contraction, certificates note (9)"
MEAN_FIELD_ASSUMPTIONS: tuple[str, ...] = (
    "The certificate covers the mean-field law of the SHK flow (one draw from rho_t), not the "
    "finite-particle, kernel-density implementation that produced the samples (note §7.1).",
    "The parameter domain is bounded and the transport has a reflecting (no-flux) boundary; "
    "MALA proposals that leave the domain are rejected.",
    "Every run starts from the same public initial law: uniform on the domain.",
    "In the idealised law the reaction step is exact and the transport kernel leaves the "
    "target invariant (MALA), the discrete-time form of route C (note §3.2).",
    "After the flow, the relaxation phase's moves are MALA moves that leave the target "
    "invariant; they never increase the bound, so it holds at the same flow time.",
    "Flow time, step size, particle count, bandwidth and relaxation moves depend on public "
    "parameters only.",
    "Each released sample is counted as one release of the mechanism (note §4).",
    "Released values are snapped to a public grid (post-processing; certifies nothing more).",
)


def route_c_beta(flow_time: float, inverse_temperature: float, sensitivity: Sensitivity) -> float:
    """(9): ``β_C(t) = λΔ_osc + 2 e^{-t} λU`` (bounded-range, hence pure DP, of the SHK law)."""
    if flow_time < 0:
        raise InvalidParameter("flow_time", "must be >= 0")
    lam = inverse_temperature
    return lam * sensitivity.delta_osc + 2.0 * math.exp(-flow_time) * lam * sensitivity.range_bound


@dataclass(frozen=True)
class PrivacyValues:
    """All guarantees of one release (or one sample) of a mechanism."""

    pure_epsilon: float
    bounded_range: float | None  # β when the mechanism is β-BR
    zcdp_rho: float
    kl: float
    renyi: tuple[tuple[float, float], ...]  # (α, D_α) on REPORTED_ORDERS
    hockey_stick: tuple[tuple[float, float], ...]  # (ε′, δ(ε′)); per-sample values only
    approx_epsilon: float
    approx_delta: float

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pure_dp": {"epsilon": self.pure_epsilon},
            "approx_dp": {"epsilon": self.approx_epsilon, "delta": self.approx_delta},
            "renyi": [{"alpha": a, "epsilon": e} for a, e in self.renyi],
            "zcdp": {"rho": self.zcdp_rho},
            "kl": self.kl,
        }
        if self.bounded_range is not None:
            out["bounded_range"] = {"beta": self.bounded_range}
        if self.hockey_stick:
            out["hockey_stick"] = [{"epsilon": e, "delta": d} for e, d in self.hockey_stick]
        return out


@dataclass(frozen=True)
class Certificate:
    """A release's certificate; ``as_dict`` is the API.md JSON object."""

    scope: Literal["mean_field", "exact"]
    bound: str
    whole: PrivacyValues
    per_sample: PrivacyValues
    n_samples: int
    inverse_temperature: float
    flow_time: float | None
    initialization: str | None
    neighbouring: str
    assumptions: tuple[str, ...]
    utility_form: str | None = None  # "gradient_norm", "loss" or "count" (mode)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "bound": self.bound,
            **self.whole.as_dict(),
            "per_sample": self.per_sample.as_dict(),
            "flow_time": self.flow_time,
            "n_samples": self.n_samples,
            "inverse_temperature": self.inverse_temperature,
            "initialization": self.initialization,
            "neighbouring": self.neighbouring,
            "utility_form": self.utility_form,
            "assumptions": list(self.assumptions),
        }


def _values(
    per_sample_beta: float, m: int, delta: float, *, bounded_range: bool
) -> tuple[PrivacyValues, PrivacyValues]:
    """Per-sample and whole-release values for m samples of a β-BR (or β-DP) mechanism."""
    b = per_sample_beta
    if bounded_range:
        rho, kl = accounting.zcdp_from_beta(b), accounting.kl_from_beta(b)

        def renyi(alpha: float) -> float:
            return accounting.renyi_from_beta(b, alpha)

        hockey = tuple((e, accounting.hockey_stick_from_beta(b, e)) for e in REPORTED_HOCKEY_STICK)
    else:
        rho, kl = accounting.zcdp_from_pure(b), accounting.kl_from_pure(b)

        def renyi(alpha: float) -> float:
            return accounting.renyi_from_pure(b, alpha)

        hockey = ()
    report_delta = delta if delta > 0 else REFERENCE_DELTA
    curves = {}
    for count in sorted({1, m}):  # one opacus conversion when m = 1
        rdp = [count * renyi(a) for a in accounting.DEFAULT_ORDERS]
        eps, _ = accounting.rdp_to_approx_dp(rdp, report_delta)
        curves[count] = min(eps, count * b)  # pure DP is (ε, δ)-DP for every δ
    per_sample = PrivacyValues(
        pure_epsilon=b,
        bounded_range=b if bounded_range else None,
        zcdp_rho=rho,
        kl=kl,
        renyi=tuple((a, renyi(a)) for a in REPORTED_ORDERS),
        hockey_stick=hockey,
        approx_epsilon=curves[1],
        approx_delta=report_delta,
    )
    whole = PrivacyValues(
        pure_epsilon=m * b,
        bounded_range=m * b if bounded_range else None,
        zcdp_rho=m * rho,
        kl=m * kl,
        renyi=tuple((a, m * renyi(a)) for a in REPORTED_ORDERS),
        hockey_stick=hockey if m == 1 else (),
        approx_epsilon=curves[m],
        approx_delta=report_delta,
    )
    return per_sample, whole


def mean_field_certificate(
    *,
    inverse_temperature: float,
    flow_time: float,
    sensitivity: Sensitivity,
    n_samples: int,
    delta: float,
    neighbouring: str,
    utility_form: str | None = None,
) -> Certificate:
    """Certificate of an SHK release (scope ``mean_field``, bound (9))."""
    beta = route_c_beta(flow_time, inverse_temperature, sensitivity)
    per_sample, whole = _values(beta, n_samples, delta, bounded_range=True)
    return Certificate(
        scope="mean_field",
        bound=ROUTE_C,
        whole=whole,
        per_sample=per_sample,
        n_samples=n_samples,
        inverse_temperature=inverse_temperature,
        flow_time=flow_time,
        initialization="uniform",
        neighbouring=neighbouring,
        assumptions=MEAN_FIELD_ASSUMPTIONS,
        utility_form=utility_form,
    )


def exact_certificate(
    *,
    mechanism: str,
    epsilon_implemented: float,
    inverse_temperature: float,
    bounded_range: bool,
    n_samples: int,
    delta: float,
    neighbouring: str,
    utility_form: str | None = None,
) -> Certificate:
    """Certificate of an exact mechanism (scope ``exact``): DP as implemented (note §7.3)."""
    per_sample, whole = _values(epsilon_implemented, n_samples, delta, bounded_range=bounded_range)
    assumptions = (
        f"{mechanism} is differentially private as implemented: exact integer arithmetic and a "
        "cryptographically secure random source on the data path, no floating point there "
        "(note §7.3, §7.4).",
        "Each released sample is counted as one release of the mechanism (note §4).",
    )
    return Certificate(
        scope="exact",
        bound=f"{mechanism}, note (31)",
        whole=whole,
        per_sample=per_sample,
        n_samples=n_samples,
        inverse_temperature=inverse_temperature,
        flow_time=None,
        initialization=None,
        neighbouring=neighbouring,
        assumptions=assumptions,
        utility_form=utility_form,
    )
