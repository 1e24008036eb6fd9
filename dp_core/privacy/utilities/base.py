"""What every utility family provides: public sensitivities, record preparation, the loss.

A family turns public parameters (bounds, clip, radius, q, k) into

* a public :class:`~dp_core.types.Domain` Θ,
* :class:`Sensitivity` — Δu, Δ_osc and the range bound U of certificates note (2), derived by
  construction from the clipping (note §9; users never declare a sensitivity),
* ``prepare(records)`` — validate and clip the private records to the public bounds and build
  the exact summaries the loss needs,
* ``loss(prepared, points)`` — ``L(θ) = -u(D, θ)`` and ∇L at N points.

:class:`UtilityPotential` is the exponential mechanism's potential ``V = -λu = λL`` in the
engine's :class:`~dp_core.types.Potential` form. Nothing here returns or logs a record.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal, Protocol

import numpy as np

from dp_core.errors import InvalidParameter
from dp_core.types import Domain, FloatArray

__all__ = [
    "FORMS",
    "NEIGHBOURING",
    "Form",
    "Neighbouring",
    "Sensitivity",
    "UtilityFamily",
    "UtilityPotential",
    "check_form",
    "check_neighbouring",
    "clip_columns",
    "describe",
    "gradient_norm_loss",
    "gradient_norm_sensitivity",
    "sum_form_sensitivity",
]

Neighbouring = Literal["add_remove", "replace_one"]
NEIGHBOURING: tuple[str, ...] = ("add_remove", "replace_one")
Form = Literal["gradient_norm", "loss"]
FORMS: tuple[str, ...] = ("gradient_norm", "loss")


@dataclass(frozen=True)
class Sensitivity:
    """Public constants of certificates note (2) for records of size at most ``n_max``.

    delta_u : Δu, the sup-norm sensitivity.
    delta_osc : Δ_osc, the oscillation sensitivity (sets λ = (1-η)ε/Δ_osc, (10)).
    range_bound : U = sup_D osc_θ u(D, ·) (enters (9) and t_cert).
    slope_bound : a public bound on the Lipschitz constant of u(D, ·) on Θ over every D of at
        most ``n_max`` records (``None``: none known). It shapes only the sampler's public
        relaxation range (``shk.relaxation_schedule``): no law of exp(λu) varies on a length
        below 1/(λ·slope_bound). It enters no certificate.
    """

    delta_u: float
    delta_osc: float
    range_bound: float
    slope_bound: float | None = None


def check_neighbouring(neighbouring: str) -> Neighbouring:
    if neighbouring not in NEIGHBOURING:
        raise InvalidParameter("neighbouring", "must be 'add_remove' or 'replace_one'")
    return neighbouring  # type: ignore[return-value]


def check_form(form: str) -> Form:
    if form not in FORMS:
        raise InvalidParameter("utility.form", "must be 'gradient_norm' or 'loss'")
    return form  # type: ignore[return-value]


def gradient_norm_sensitivity(
    gradient_bound: float,
    neighbouring: str,
    n_max: int,
    replace_delta_u: float | None = None,
    *,
    gradient_lipschitz: float | None = None,
) -> Sensitivity:
    """Accuracy note §3 for ``u = -|Σ_x g(θ; x)|`` with |g| <= G on Θ and the clipped records.

    add/remove: u(D + x) - u(D) = |A| - |A + g| lies in [-G, G], so Δu = G and Δ_osc = 2G.
    replace-one: |u(D) - u(D')| <= |g(θ; x) - g(θ; x')| <= 2G, or the family's tighter
    ``replace_delta_u`` where θ cancels (the mean: |x - x'|); Δ_osc = 2Δu. Since u ∈ [-n G, 0],
    U = n_max·G. ``gradient_lipschitz`` H: each g(·; x) is H-Lipschitz in θ (a clip to a ball
    keeps H: the projection is 1-Lipschitz), so u = -|A| is (n_max·H)-Lipschitz: the slope
    bound.
    """
    check_neighbouring(neighbouring)
    if n_max < 1:
        raise InvalidParameter("size_bound", "must be >= 1")
    big_g = float(gradient_bound)
    delta_u = big_g
    if neighbouring == "replace_one":
        delta_u = 2.0 * big_g if replace_delta_u is None else min(2.0 * big_g, replace_delta_u)
    slope = None if gradient_lipschitz is None else n_max * float(gradient_lipschitz)
    return Sensitivity(
        delta_u=delta_u, delta_osc=2.0 * delta_u, range_bound=n_max * big_g, slope_bound=slope
    )


def gradient_norm_loss(
    sums: FloatArray, jacobian_times_sums: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """``L = -u = |A|`` and ``∇L = J A / |A|`` (J = ∂A/∂θ symmetric) from A and J·A at N points;
    the gradient is 0 where A = 0 (the cone point: any subgradient serves MALA)."""
    norm = np.sqrt(np.einsum("ij,ij->i", sums, sums))
    safe = np.where(norm > 0.0, norm, 1.0)
    grad = np.where((norm > 0.0)[:, None], jacobian_times_sums / safe[:, None], 0.0)
    return norm, grad


def sum_form_sensitivity(
    loss_bound: float, loss_oscillation: float, neighbouring: str, n_max: int
) -> Sensitivity:
    """The general lemma of note §9 for ``u = -Σ_x ℓ(θ; x)`` with ℓ ∈ [0, B], o = sup osc_θ ℓ:
    add/remove Δu = B, Δ_osc = o; replace-one Δu = B, Δ_osc = 2o; U = n_max·o."""
    check_neighbouring(neighbouring)
    if n_max < 1:
        raise InvalidParameter("size_bound", "must be >= 1")
    factor = 1.0 if neighbouring == "add_remove" else 2.0
    return Sensitivity(
        delta_u=float(loss_bound),
        delta_osc=factor * float(loss_oscillation),
        range_bound=float(n_max) * float(loss_oscillation),
    )


def clip_columns(records: Any, lower: FloatArray, upper: FloatArray, field: str) -> FloatArray:
    """Records as a float64 (n, d) array clipped to [lower, upper] per column.

    Non-finite values are refused; the message names the field only, never a value.
    """
    arr = np.asarray(records, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != lower.shape[0]:
        raise InvalidParameter(field, f"expected records with {lower.shape[0]} column(s)")
    if not np.all(np.isfinite(arr)):
        raise InvalidParameter(field, "records must be finite numbers")
    return np.ascontiguousarray(np.clip(arr, lower, upper))


def describe(utility: Any) -> dict[str, Any]:
    """The public parameters of a family dataclass (its init fields), JSON-ready."""
    return {
        f.name: list(v) if isinstance(v := getattr(utility, f.name), tuple) else v
        for f in fields(utility)
        if f.init
    }


class UtilityFamily(Protocol):
    """A utility family with its public parameters fixed (see the module docstring)."""

    family: str
    form: str

    @property
    def domain(self) -> Domain: ...

    def sensitivity(self, neighbouring: str, n_max: int) -> Sensitivity: ...

    def prepare(self, records: Any) -> Any: ...

    def loss(self, prepared: Any, points: FloatArray) -> tuple[FloatArray, FloatArray]: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class UtilityPotential:
    """V = λ L = -λ u for prepared records (an engine ``Potential``)."""

    utility: UtilityFamily
    prepared: Any
    inverse_temperature: float

    @property
    def dim(self) -> int:
        return self.utility.domain.dim

    def value_and_grad(self, points: FloatArray) -> tuple[FloatArray, FloatArray]:
        loss, grad = self.utility.loss(self.prepared, points)
        lam = self.inverse_temperature
        return lam * loss, lam * grad
