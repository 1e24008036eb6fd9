"""ExponentialMechanism: public planning, certificate properties and shape, releases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dp_core.errors import InvalidParameter
from dp_core.flows.shk import relaxation_schedule
from dp_core.privacy import ClippedMean, ExponentialMechanism, KMeans, Mode, Quantile
from dp_core.privacy import exact as exact_module
from dp_core.privacy.certificates import route_c_beta
from dp_core.privacy.grid import QUANTUM_DIVISIONS, grid_inverse_temperature, public_grid
from dp_core.privacy.schedule import shk_schedule
from dp_core.privacy.utilities import LinearRegression, LogisticRegression, Sensitivity

FORMS = ("gradient_norm", "loss")
KMEANS_1D = [KMeans((0.0,), (1.0,), 2, 0.5, form=f) for f in FORMS]
GRID_FAMILIES = [  # the exact path's families (dim <= 3), both forms
    *[ClippedMean((0.0, 0.0), (10.0, 10.0), 3.0, form=f) for f in FORMS],
    *[ClippedMean((-5.0,), (5.0,), form=f) for f in FORMS],
    *KMEANS_1D,
    *[LinearRegression((-1.0, -1.0), (1.0, 1.0), -2.0, 2.0, 1.0, form=f) for f in FORMS],
    *[LogisticRegression((-1.0, 0.0, -2.0), (1.0, 3.0, 2.0), 2.0, form=f) for f in FORMS],
]
FAMILIES = [
    Quantile(0.5, 0.0, 100.0),
    Quantile(0.9, -1.0, 1.0),
    *GRID_FAMILIES,
    *[KMeans((0.0, 0.0), (1.0, 1.0), 3, form=f) for f in FORMS],  # k·d = 6: SHK only
]


@settings(max_examples=60, deadline=None)
@given(
    family=st.sampled_from(FAMILIES),
    epsilon=st.floats(0.01, 20.0),
    n_max=st.integers(1, 10**7),
    slack=st.floats(0.01, 0.5),
    neighbouring=st.sampled_from(["add_remove", "replace_one"]),
)
def test_schedule_certifies_the_requested_epsilon(family, epsilon, n_max, slack, neighbouring):
    """(10): β_C(t_cert) <= ε for every family, ε, size bound and slack."""
    sens = family.sensitivity(neighbouring, n_max)
    schedule = shk_schedule(epsilon, sens, family.domain, slack=slack)
    beta = route_c_beta(schedule.flow_time, schedule.inverse_temperature, sens)
    assert beta <= epsilon * (1 + 1e-12)
    assert schedule.n_steps == 0 or schedule.n_steps * schedule.step_size == pytest.approx(
        schedule.flow_time
    )


@settings(max_examples=60, deadline=None)
@given(
    t1=st.floats(0.0, 30.0),
    t2=st.floats(0.0, 30.0),
    e1=st.floats(0.01, 10.0),
    e2=st.floats(0.01, 10.0),
)
def test_certificate_monotone_in_time_and_epsilon(t1, t2, e1, e2):
    """β_C(t) is non-increasing in t and non-decreasing in ε (λ ∝ ε) — route C (9)."""
    sens = Sensitivity(delta_u=0.5, delta_osc=1.0, range_bound=500.0)
    lo_t, hi_t = sorted((t1, t2))
    lo_e, hi_e = sorted((e1, e2))
    assert route_c_beta(hi_t, 0.95 * lo_e, sens) <= route_c_beta(lo_t, 0.95 * lo_e, sens)
    assert route_c_beta(lo_t, 0.95 * lo_e, sens) <= route_c_beta(lo_t, 0.95 * hi_e, sens)


def test_plan_is_public_and_splits_epsilon_across_samples() -> None:
    mech = ExponentialMechanism(Quantile(0.5, 18.0, 100.0), 1.0, n_max=10**6)
    one, four = mech.plan(1), mech.plan(4)
    assert one.certificate.whole.pure_epsilon <= 1.0 + 1e-12
    assert four.certificate.whole.pure_epsilon <= 1.0 + 1e-12
    assert four.certificate.per_sample.pure_epsilon <= 0.25 + 1e-12
    assert four.certificate.whole.zcdp_rho == pytest.approx(4 * (0.25**2) / 8, rel=1e-9)
    assert four.charge.pure_epsilon == 1.0
    # t_cert of (10) for the median at n_max = 10^6, η = 0.05: log(1.9e7)
    assert one.schedule.flow_time == pytest.approx(math.log(1.9e7))
    assert one.certificate.flow_time == one.schedule.flow_time


def test_certificate_serialises_to_the_api_shape() -> None:
    cert = ExponentialMechanism(Quantile(0.5, 0.0, 1.0), 1.0, delta=1e-6).plan(2).certificate
    body = cert.as_dict()
    assert body["scope"] == "mean_field"
    assert "(9)" in body["bound"]
    assert set(body) >= {
        "pure_dp",
        "approx_dp",
        "renyi",
        "per_sample",
        "flow_time",
        "n_samples",
        "inverse_temperature",
        "initialization",
        "neighbouring",
        "assumptions",
    }
    assert body["initialization"] == "uniform" and body["n_samples"] == 2
    assert body["approx_dp"]["delta"] == 1e-6
    assert body["approx_dp"]["epsilon"] <= body["pure_dp"]["epsilon"]
    assert all(r["epsilon"] <= body["pure_dp"]["epsilon"] for r in body["renyi"])
    assert body["per_sample"]["pure_dp"]["epsilon"] == pytest.approx(0.5)
    assert any("finite-particle" in a for a in body["assumptions"])


def test_release_certificate_does_not_depend_on_records() -> None:
    mech = ExponentialMechanism(Quantile(0.5, 0.0, 1.0), 1.0, n_max=1000, particles=200)
    rng = np.random.default_rng(0)
    a = mech.sample(rng.uniform(size=300), 2)
    b = mech.sample(rng.beta(5, 1, size=50), 2)
    assert a.certificate == b.certificate
    assert a.plan.sampler == b.plan.sampler


def test_median_release_lands_near_the_median() -> None:
    """Utility (28)/(29): with λ ≈ 0.95 per rank, a sample 500 ranks from the median has
    relative probability below e^{-0.95·500}·e^{ηε/2}: it cannot happen at any seed."""
    rng = np.random.default_rng(1)
    data = np.clip(rng.normal(40.0, 10.0, 5000), 18.0, 100.0)
    release = ExponentialMechanism(Quantile(0.5, 18.0, 100.0), 1.0).sample(data, 3)
    lo, hi = np.quantile(data, [0.4, 0.6])
    assert release.samples.shape == (3, 1)
    assert np.all((release.samples >= lo) & (release.samples <= hi))


def test_samples_are_snapped_to_the_public_grid() -> None:
    utility = ClippedMean((0.0, 0.0), (8.0, 8.0), 2.0)
    release = ExponentialMechanism(utility, 2.0, n_max=500, particles=300).sample(
        np.random.default_rng(2).uniform(0, 8, size=(100, 2)), 5
    )
    quantum = 8.0 * 2.0**-24
    assert np.allclose(release.samples / quantum, np.round(release.samples / quantum), atol=1e-6)
    assert np.all((release.samples >= 0) & (release.samples <= 8))


def test_exact_methods_and_refusals() -> None:
    mode = ExponentialMechanism(Mode(("a", "b", "c")), 50.0, method="exact")
    assert mode.sample(["c"] * 100 + ["a"], 1).samples.tolist() == [[2]]  # λ·100 dominates
    assert mode.plan().certificate.scope == "exact"
    quantile = ExponentialMechanism(Quantile(0.5, 0.0, 1.0), 1.0, method="exact")
    values = quantile.sample(np.linspace(0, 1, 101), 3).samples
    assert values.shape == (3, 1) and np.all((values >= 0) & (values <= 1))
    with pytest.raises(InvalidParameter) as err:
        ExponentialMechanism(ClippedMean((0.0,) * 4, (1.0,) * 4, 1.0), 1.0, method="exact")
    assert err.value.field == "method"
    with pytest.raises(InvalidParameter) as err:
        ExponentialMechanism(Mode(("a",)), 1.0)
    assert err.value.field == "method"
    with pytest.raises(InvalidParameter) as err:
        ExponentialMechanism(Quantile(0.5, 0.0, 1.0), -1.0)
    assert err.value.field == "epsilon"
    with pytest.raises(InvalidParameter) as err:
        ExponentialMechanism(Quantile(0.5, 0.0, 1.0), 1.0).plan(0)
    assert err.value.field == "n_samples"


@pytest.mark.parametrize("form,meshes", [("gradient_norm", 1), ("loss", 2)])
def test_exact_grid_mechanism_for_low_dimensional_families(form: str, meshes: int) -> None:
    """EM over a public grid (note §7.3): the draw is a grid point and, at a large ε, lands
    within ``meshes`` mesh widths h = 8/64 of the sample mean per axis (the records lie within
    2 of it, so neither clip binds and the mean is the maximiser).

    Per sample ε = 25; λ = grid_inverse_temperature. Gradient form: u = -n|θ - m| (n = 400),
    λ = 25/(2050·2/1024) = 6.2; the nearest grid point has |δ| <= h/√2, any point with
    |δ|_∞ > h has |δ| > h: a score gap >= n(h - h/√2) - 2(n q √2/2 + q) = 13.5, a relative
    weight <= e^{-84} (4096 points: e^{-76}). Loss form: u = -n|θ - m|² - const, λ = 25/4; at
    |δ|_∞ > 2h the gap is >= n(4h² - h²/2) - n q = 20.3, a weight <= e^{-127}."""
    rng = np.random.default_rng(4)
    records = rng.normal(3.0, 0.2, size=(400, 2))
    utility = ClippedMean((0.0, 0.0), (8.0, 8.0), 2.0, form=form)
    release = ExponentialMechanism(utility, 50.0, n_max=400, method="exact").sample(records, 2)
    grid = public_grid(utility.domain)
    assert release.certificate.scope == "exact"
    assert release.certificate.utility_form == form
    assert all(any(np.array_equal(s, g) for g in grid) for s in release.samples)
    assert np.all(np.abs(release.samples - records.mean(axis=0)) <= meshes * 8.0 / 64)


def _integer_osc(utility, neighbouring: str) -> set[int]:
    """Δ̃_osc of grid.py's docstring from the public parameters: gradient form 2K (add/remove)
    or 4K (replace-one) with K = ⌈1024 + √d/2⌉; loss form ⌈B/q⌉ or twice it, where
    fl(B/(B/1024)) may be 1024 or its neighbour above (ceil 1025)."""
    factor = 1 if neighbouring == "add_remove" else 2
    if utility.form == "gradient_norm":
        unit = math.ceil(QUANTUM_DIVISIONS + math.sqrt(utility.domain.dim) / 2)
        return {2 * factor * unit}
    return {factor * QUANTUM_DIVISIONS, factor * (QUANTUM_DIVISIONS + 1)}


def _quantum(utility) -> float:
    bound = utility.gradient_bound if utility.form == "gradient_norm" else utility.loss_bound
    return bound / QUANTUM_DIVISIONS


@pytest.mark.parametrize("neighbouring", ["add_remove", "replace_one"])
@pytest.mark.parametrize("utility", KMEANS_1D, ids=FORMS)
def test_grid_release_is_called_with_the_declared_integer_sensitivity(
    monkeypatch, utility, neighbouring
) -> None:
    """What the exact release hands the base-2 draw: the per-sample ε and the integer Δ̃_osc
    of grid.py, which bounds sup|ũ(D') - ũ(D)| and osc(ũ(D') - ũ(D)) for adversarial
    neighbours (k-means on [0, 1], clip 0.5: records beyond the bounds, at them, on the clip
    radius and on ties between centres); the certificate's λ is ε/(Δ̃_osc·q)."""
    calls: list[tuple[list[int], float, int]] = []

    def spy(scores, epsilon, osc, rng=None):  # the draw itself is test_exact's subject
        calls.append((list(scores), epsilon, osc))
        return exact_module.ExactDraw(index=0, epsilon_implemented=epsilon, zcdp_rho=0, base=None)

    monkeypatch.setattr(exact_module, "exact_grid_mechanism", spy)
    records = np.random.default_rng(5).uniform(-0.2, 1.2, size=(200, 1))
    mech = ExponentialMechanism(utility, 2.0, neighbouring=neighbouring, method="exact")
    for extreme in (-1.0, 0.0, 1.0, 2.0, 0.5, 0.25, 0.75, 1 / 64):
        calls.clear()
        mech.sample(records, 2)
        if neighbouring == "replace_one":
            neighbour = records.copy()
            neighbour[7] = extreme
        else:
            neighbour = np.vstack([records, [[extreme]]])
        mech.sample(neighbour, 2)
        assert len(calls) == 4  # one draw per sample, from the same scores
        (a, eps_a, osc), repeat, (b, eps_b, osc_b), _ = calls
        assert repeat == (a, eps_a, osc)
        assert eps_a == eps_b == 1.0 and osc == osc_b
        assert osc in _integer_osc(utility, neighbouring)
        diff = np.array(b) - np.array(a)
        assert np.ptp(diff) <= osc and np.max(np.abs(diff)) <= osc
    lam = mech.plan(2).certificate.inverse_temperature
    assert lam == pytest.approx(1.0 / (osc * _quantum(utility)), rel=1e-12)


@pytest.mark.parametrize("neighbouring", ["add_remove", "replace_one"])
@pytest.mark.parametrize("n_samples", [1, 3])
def test_exact_plan_reports_the_form_and_the_sampled_inverse_temperature(
    n_samples: int, neighbouring: str
) -> None:
    """The certificate names the utility form ("gradient_norm" by default, "loss" when asked,
    "count" for the mode) and, for the grid families, the λ of the law actually sampled:
    grid_inverse_temperature, which is -log(b)/q for the public base b of (31) and never
    sharper than the continuous mechanism's ε/Δ_osc (K·q >= G, ⌈B/q⌉·q >= B)."""
    epsilon = 1.5
    per_sample = epsilon / n_samples
    for utility in GRID_FAMILIES:
        kwargs = {"n_max": 1000, "neighbouring": neighbouring}
        exact_plan = ExponentialMechanism(utility, epsilon, method="exact", **kwargs).plan(
            n_samples
        )
        shk_plan = ExponentialMechanism(utility, epsilon, **kwargs).plan(n_samples)
        for plan in (exact_plan, shk_plan):
            assert plan.certificate.utility_form == utility.form
            assert plan.certificate.as_dict()["utility_form"] == utility.form
        lam = exact_plan.certificate.inverse_temperature
        assert lam == grid_inverse_temperature(utility, per_sample, neighbouring)
        (osc,) = {
            o
            for o in _integer_osc(utility, neighbouring)
            if lam * o * _quantum(utility) == pytest.approx(per_sample, rel=1e-12)
        }
        base = exact_module.exponential_base(per_sample, osc)
        assert -math.log(base) / _quantum(utility) == pytest.approx(lam, rel=1e-9)
        assert lam <= per_sample / utility.sensitivity(neighbouring, 1000).delta_osc
    assert ClippedMean((0.0,), (1.0,)).form == "gradient_norm"
    mode = ExponentialMechanism(Mode(("a", "b")), epsilon, method="exact").plan(n_samples)
    assert mode.certificate.utility_form == "count"


def test_relaxation_phase_is_planned_from_public_parameters() -> None:
    """The plan's relaxation follows relaxation_schedule(Θ, λU), appears in the API's sampler
    object, and a client override is validated before anything runs."""
    utility = Quantile(0.5, 0.0, 100.0)
    plan = ExponentialMechanism(utility, 1.0, n_max=10**6).plan(1)
    schedule = plan.schedule
    lam_u = schedule.inverse_temperature * utility.sensitivity("add_remove", 10**6).range_bound
    assert schedule.relaxation == relaxation_schedule(utility.domain, lam_u)
    assert plan.sampler["relaxation_moves"] == schedule.relaxation.moves == 286
    assert plan.sampler["relaxation_step_range"] == list(schedule.relaxation.step_range)
    off = ExponentialMechanism(utility, 1.0, relaxation_moves=0).plan(1).schedule
    assert off.relaxation.moves == 0 and off.relaxation.step_range == schedule.relaxation.step_range
    for bad in (-1, 10_001, 2.5, True):
        with pytest.raises(InvalidParameter) as err:
            ExponentialMechanism(utility, 1.0, relaxation_moves=bad).plan(1)
        assert err.value.field == "sampler.relaxation_moves"


def test_relaxation_reaches_the_gradient_form_slope() -> None:
    """The gradient-norm utilities carry the slope bound n_max·H (H the per-record gradient's
    Lipschitz constant: 1 for the mean, X² and X²/4 for the regressions), and the plan's
    relaxation uses λ times it; a binding clip lowers U = n_max·c but not the slope, so the
    range reaches further down than λU alone gives."""
    n_max = 10_000
    clipped = ClippedMean((0.0,), (1.0,), 0.2)
    sens = clipped.sensitivity("add_remove", n_max)
    assert sens.slope_bound == n_max * 1.0 and sens.range_bound == n_max * 0.2
    schedule = ExponentialMechanism(clipped, 1.0, n_max=n_max).plan(1).schedule
    lam = schedule.inverse_temperature
    assert schedule.relaxation == relaxation_schedule(
        clipped.domain, lam * sens.range_bound, lam * sens.slope_bound
    )
    assert math.sqrt(2 * schedule.relaxation.step_range[0]) == pytest.approx(1 / (lam * n_max))
    linear = LinearRegression((-1.0, 0.0), (1.0, 2.0), -3.0, 3.0, 1.5)
    assert linear.sensitivity("add_remove", 7).slope_bound == pytest.approx(7 * 5.0)
    logistic = LogisticRegression((-1.0, 0.0), (1.0, 2.0), 1.5)
    assert logistic.sensitivity("replace_one", 7).slope_bound == pytest.approx(7 * 5.0 / 4)
    assert ClippedMean((0.0,), (1.0,), form="loss").sensitivity("add_remove", 7).slope_bound is None
