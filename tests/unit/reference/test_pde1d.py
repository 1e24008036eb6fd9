"""Tests of the 1-D SHK finite-volume reference (certificates note §8.1, §8.2)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import scipy.linalg

from dp_core.errors import InvalidParameter
from dp_core.reference.pde1d import (
    Boundary,
    Grid1D,
    hockey_stick,
    kl,
    log_ratio_sup_osc,
    renyi,
    solve_shk_1d,
    stationary_density,
    transport_generator_1d,
)

Potential = Callable[[np.ndarray], np.ndarray]


def tilt(th: np.ndarray) -> np.ndarray:
    return 30.0 * th


def tilt_shifted(th: np.ndarray) -> np.ndarray:
    """V′ = V + (ε/2)(2θ − 1) with ε = 1 (certificates §3.4): osc W = 1 on [0, 1]."""
    return tilt(th) + 0.5 * (2.0 * th - 1.0)


def double_well(th: np.ndarray) -> np.ndarray:
    """Wells at 0.25 and 0.75, barrier 3 at 0.5."""
    return 768.0 * (th - 0.25) ** 2 * (th - 0.75) ** 2


def quad(th: np.ndarray) -> np.ndarray:
    return 30.0 * (th - 0.3) ** 2


def sine(th: np.ndarray) -> np.ndarray:
    return 2.0 * np.cos(2.0 * np.pi * th)


def steep(th: np.ndarray) -> np.ndarray:
    return 80.0 * th**2


def steps(th: np.ndarray) -> np.ndarray:
    """Piecewise constant, like a rank utility: kinks are allowed in the operator form."""
    return 4.0 * np.floor(5.0 * th) % 3.0


POTENTIALS = {
    "tilt": tilt,
    "double_well": double_well,
    "quad": quad,
    "sine": sine,
    "steep": steep,
    "steps": steps,
}
UNIT = Grid1D(0.0, 1.0, 200)


def osc(a: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.max(a, axis=axis) - np.min(a, axis=axis)


# --------------------------------------------------------------------------- grid and operator
def test_grid_geometry() -> None:
    g = Grid1D(-1.0, 3.0, 8)
    assert g.dx == 0.5
    np.testing.assert_allclose(g.centres, -0.75 + 0.5 * np.arange(8))
    assert g.faces[0] == -1.0 and g.faces[-1] == 3.0 and g.faces.shape == (9,)


@pytest.mark.parametrize("boundary", ["reflecting", "periodic"])
def test_implicit_euler_kernel_is_pi_invariant_markov(boundary: Boundary) -> None:
    """(I − dt·A)^{-1} is Markov (non-negative, unit row sums) and fixes π (§8.1)."""
    grid = Grid1D(0.0, 1.0, 40)
    v = steps(grid.centres) + double_well(grid.centres)
    A = transport_generator_1d(v, grid, kappa_T=1.0, boundary=boundary).toarray()
    pi = stationary_density(v, grid)
    np.testing.assert_allclose(A.sum(axis=1), 0.0, atol=1e-9 * np.abs(A).max())
    np.testing.assert_allclose(pi[:, None] * A, (pi[:, None] * A).T, rtol=1e-12, atol=1e-12)
    P = scipy.linalg.inv(np.eye(grid.m) - 1e-3 * A)
    assert P.min() >= 0.0
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(pi @ P, pi, rtol=1e-11, atol=1e-14 * pi.max())
    n_links = np.count_nonzero(A - np.diag(np.diag(A)))
    assert n_links == 2 * (grid.m - 1) + (2 if boundary == "periodic" else 0)


# --------------------------------------------------------------------------- §8.1 invariants
@pytest.mark.parametrize("boundary", ["reflecting", "periodic"])
def test_mass_and_positivity(boundary: Boundary) -> None:
    rng = np.random.default_rng(1)
    rho0 = rng.uniform(0.2, 2.0, UNIT.m)
    sol = solve_shk_1d(sine, UNIT, np.linspace(0.0, 2.0, 9), dt=0.01, boundary=boundary, rho0=rho0)
    assert sol.densities.shape == (9, UNIT.m)
    assert np.all(sol.densities > 0.0)
    np.testing.assert_allclose(sol.densities.sum(axis=1) * UNIT.dx, 1.0, atol=1e-12)
    np.testing.assert_allclose(sol.densities[0], rho0 / (rho0.sum() * UNIT.dx), rtol=1e-12)
    np.testing.assert_allclose(sol.cdf_faces(4)[-1], 1.0, atol=1e-12)


@pytest.mark.parametrize("boundary", ["reflecting", "periodic"])
@pytest.mark.parametrize("name", ["double_well", "steps"])
def test_discrete_pi_is_stationary(boundary: Boundary, name: str) -> None:
    V = POTENTIALS[name]
    pi = stationary_density(V, UNIT)
    sol = solve_shk_1d(V, UNIT, [0.5, 3.0], dt=0.01, boundary=boundary, rho0=pi)
    np.testing.assert_allclose(sol.densities / pi, 1.0, atol=1e-12)


@pytest.mark.parametrize("kappa_R", [1.0, 2.5])
def test_pure_reaction_matches_closed_form(kappa_R: float) -> None:
    """κ_T = 0: ρ_t ∝ ρ₀^{e^{−κ_R t}} π^{1−e^{−κ_R t}} (certificates (6)) to round-off."""
    rng = np.random.default_rng(2)
    rho0 = rng.uniform(0.1, 3.0, UNIT.m)
    times = np.array([0.0, 0.013, 0.5, 1.0, 2.7])
    sol = solve_shk_1d(double_well, UNIT, times, dt=0.01, kappa_T=0.0, kappa_R=kappa_R, rho0=rho0)
    pi = stationary_density(double_well, UNIT)
    for k, t in enumerate(times):
        s = np.exp(-kappa_R * t)
        expected = rho0**s * pi ** (1.0 - s)
        expected /= expected.sum() * UNIT.dx
        np.testing.assert_allclose(sol.densities[k], expected, rtol=1e-12)


def test_t1_pure_reaction_osc_w_ratio_is_one() -> None:
    """T1 (§8.2, (7)): with κ_T = 0, osc w_t = (1 − e^{−t}) osc W exactly."""
    times = np.linspace(0.05, 8.0, 40)
    s1 = solve_shk_1d(tilt, UNIT, times, dt=0.01, kappa_T=0.0)
    s2 = solve_shk_1d(tilt_shifted, UNIT, times, dt=0.01, kappa_T=0.0)
    osc_W = osc(tilt_shifted(UNIT.centres) - tilt(UNIT.centres))
    _, osc_w = log_ratio_sup_osc(s1.densities, s2.densities)
    np.testing.assert_allclose(osc_w / ((1.0 - np.exp(-times)) * osc_W), 1.0, atol=1e-9)


@pytest.mark.parametrize("name", sorted(POTENTIALS))
def test_t2_route_c_contraction(name: str) -> None:
    """T2 (§8.2): (8) osc g_t ≤ e^{−t} osc g₀ at every output time, and (9) for w = log ρ/ρ′.

    The discrete scheme satisfies both exactly; the slack 1e-10 only absorbs round-off.
    """
    V = POTENTIALS[name]

    def v_prime(th: np.ndarray) -> np.ndarray:
        return V(th) + 0.5 * (2.0 * th - 1.0)

    times = np.concatenate([np.linspace(0.0, 0.2, 11), np.linspace(0.5, 8.0, 16)])
    s1 = solve_shk_1d(V, UNIT, times, dt=0.005)
    s2 = solve_shk_1d(v_prime, UNIT, times, dt=0.005)
    for sol, pot in ((s1, V), (s2, v_prime)):
        osc_g = osc(np.log(sol.densities / sol.pi))
        osc_g0 = osc(pot(UNIT.centres))  # ρ₀ uniform: g₀ = V + const
        assert np.all(osc_g <= np.exp(-times) * osc_g0 + 1e-10)
    _, osc_w = log_ratio_sup_osc(s1.densities, s2.densities)
    osc_W = osc(v_prime(UNIT.centres) - V(UNIT.centres))
    beta_c = osc_W + np.exp(-times) * (osc(V(UNIT.centres)) + osc(v_prime(UNIT.centres)))
    assert np.all(osc_w <= beta_c + 1e-10)


def test_convergence_to_pi() -> None:
    """sup|ρ/π − 1| < 1e-3 at t = 12: by (8) osc g_12 ≤ e^{−12}·3 ≈ 2e-5."""
    sol = solve_shk_1d(double_well, UNIT, [12.0], dt=0.02)
    assert np.max(np.abs(sol.densities[0] / sol.pi - 1.0)) < 1e-3


def test_periodic_and_reflecting_differ_for_non_periodic_potential() -> None:
    """Sanity: the wrap-around face carries mass when V is not periodic."""
    a = solve_shk_1d(tilt, UNIT, [0.05], dt=0.005, boundary="reflecting").densities[0]
    b = solve_shk_1d(tilt, UNIT, [0.05], dt=0.005, boundary="periodic").densities[0]
    assert np.max(np.abs(a - b)) > 1e-2


def test_refinement_changes_cdf_little() -> None:
    """Halving dx and dt changes the CDF at t = 1 by < 1e-3 (smooth double well).

    The scheme is first order in dt (implicit Euler) and second order in dx; measured changes:
    4.7e-4 (m 100 → 200), 8.7e-5 (200 → 400).
    """
    xs = np.linspace(-0.1, 1.1, 1201)
    cdfs = [
        solve_shk_1d(double_well, Grid1D(0.0, 1.0, m), [1.0], dt=dt).cdf_at(0, xs)
        for m, dt in ((100, 4e-3), (200, 2e-3), (400, 1e-3))
    ]
    first, second = np.max(np.abs(cdfs[1] - cdfs[0])), np.max(np.abs(cdfs[2] - cdfs[1]))
    assert first < 1e-3
    assert second < first / 2.0  # the differences shrink: the solver converges
    assert cdfs[0][0] == 0.0 and cdfs[0][-1] == 1.0


def test_time_stepping_lands_on_requested_times() -> None:
    """Output times off the dt grid and repeated times: stepping lands exactly on each."""
    times = [0.0, 0.0123, 0.0123, 0.05]
    sol = solve_shk_1d(tilt, UNIT, times, dt=0.01, kappa_T=0.0)
    np.testing.assert_array_equal(sol.densities[1], sol.densities[2])
    expected = stationary_density(lambda th: (1.0 - np.exp(-0.0123)) * tilt(th), UNIT)
    np.testing.assert_allclose(sol.densities[1], expected, rtol=1e-12)


def test_t5_transient_overshoot_exceeds_epsilon() -> None:
    """T5 (§3.4, §8.2) negative test: the tilt pair overshoots the EM level λΔ_osc = 1.

    Measured here: max_t sup|w_t| = 1.301 at t = 0.085 (m = 1000, dt = 1e-4), the note's first
    refinement value; (7) would give only (1 − e^{−0.085}) ≈ 0.08.
    """
    grid = Grid1D(0.0, 1.0, 1000)
    times = np.linspace(0.0, 0.3, 151)
    s1 = solve_shk_1d(tilt, grid, times, dt=1e-4)
    s2 = solve_shk_1d(tilt_shifted, grid, times, dt=1e-4)
    sup_w, _ = log_ratio_sup_osc(s1.densities, s2.densities)
    k = int(np.argmax(sup_w))
    assert sup_w[k] > 1.25
    assert 0.06 < times[k] < 0.11


# --------------------------------------------------------------------------- divergences
def test_divergences_on_known_pairs() -> None:
    grid = Grid1D(0.0, 1.0, 4)
    p = np.array([0.5, 1.5, 1.0, 1.0])
    q = np.array([1.0, 1.0, 1.0, 1.0])
    dx = grid.dx
    sup_w, osc_w = log_ratio_sup_osc(p, q)
    assert sup_w == pytest.approx(np.log(2.0))
    assert osc_w == pytest.approx(np.log(3.0))
    assert kl(p, q, dx) == pytest.approx(0.25 * (0.5 * np.log(0.5) + 1.5 * np.log(1.5)))
    assert kl(p, p, dx) == 0.0
    assert renyi(p, q, dx, 2.0) == pytest.approx(np.log(0.25 * (0.25 + 2.25 + 2.0)))
    # Rényi increases in α towards sup log(p/q) = log 1.5, and D_α → KL as α → 1
    orders = [1.5, 2.0, 4.0, 8.0, 16.0, 32.0]
    values = [renyi(p, q, dx, a) for a in orders]
    assert np.all(np.diff(values) > 0) and values[-1] < np.log(1.5)
    assert renyi(p, q, dx, 1.0 + 1e-6) == pytest.approx(kl(p, q, dx), rel=1e-4)
    # δ(0) is the total variation; δ(ε′) = max over both orders
    assert hockey_stick(p, q, dx, 0.0) == pytest.approx(0.125)
    assert hockey_stick(p, q, dx, np.log(1.2)) == pytest.approx(0.25 * (1.0 - 0.6))
    assert hockey_stick(p, q, dx, np.log(1.5)) == pytest.approx(0.25 * (1.0 - 0.75))
    assert hockey_stick(p, q, dx, np.log(2.0)) == 0.0


def test_divergences_batch_over_time_axis() -> None:
    times = [0.1, 0.5, 2.0]
    s1 = solve_shk_1d(quad, UNIT, times, dt=0.01)
    s2 = solve_shk_1d(double_well, UNIT, times, dt=0.01)
    batch = renyi(s1.densities, s2.densities, UNIT.dx, 4.0)
    assert np.shape(batch) == (3,)
    for k in range(3):
        assert batch[k] == pytest.approx(renyi(s1.densities[k], s2.densities[k], UNIT.dx, 4.0))
    assert np.all(kl(s1.densities, s2.densities, UNIT.dx) >= 0.0)


def test_invalid_parameters_are_rejected() -> None:
    with pytest.raises(InvalidParameter):
        Grid1D(1.0, 0.0, 10)
    with pytest.raises(InvalidParameter):
        solve_shk_1d(tilt, UNIT, [0.2, 0.1], dt=0.01)
    with pytest.raises(InvalidParameter):
        solve_shk_1d(np.zeros(3), UNIT, [0.1], dt=0.01)
    with pytest.raises(InvalidParameter):
        solve_shk_1d(tilt, UNIT, [0.1], dt=0.01, boundary="absorbing")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameter):
        renyi(np.ones(3), np.ones(3), 1.0, 1.0)
