"""Engine kernels under the MMD-type and Muon flows: the dense kernel matrix (P6) and the
student–teacher unit's reductions (``two_layer``) against NumPy references, the unit's gradient
as a derivative, and thread-count independence."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from dp_core.engine import gram, kernels, two_layer
from dp_core.reference.mmd import kernel_matrix_reference
from dp_core.reference.muon import unit_output_reference

OUTPUTS = {"quadexp": two_layer.QUADEXP, "linear": two_layer.LINEAR}


@pytest.mark.parametrize(("name", "code"), list(kernels.KERNELS.items()))
def test_kernel_matrix_matches_reference_and_is_exactly_symmetric(name: str, code: int) -> None:
    gen = np.random.default_rng(1 + code)
    x = gen.normal(size=(37, 3))
    y = gen.normal(size=(29, 3))
    k = gram.kernel_matrix(x, y, code, 0.8)
    assert np.abs(k - kernel_matrix_reference(x, y, name, 0.8)).max() <= 4e-16
    kyy = gram.kernel_matrix(y, y, code, 0.8)
    assert np.array_equal(kyy, kyy.T)
    assert np.all(np.diag(kyy) == 1.0)


def _units(n: int, hidden: int, dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, hidden, dim + 1))


def _inputs(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("n_inputs", [1, 31, 100])
def test_two_layer_reductions_match_reference(output: str, n_inputs: int) -> None:
    """mean_output, pullback (values and gradients) and unit_outputs against the per-unit NumPy
    reference, with input counts below, at and off the tile size."""
    z = _units(23, 3, 7, 2)
    x = _inputs(n_inputs, 7, 3)
    gen = np.random.default_rng(4)
    a, r = gen.normal(size=23), gen.normal(size=n_inputs)
    psi = np.empty((23, n_inputs))
    dpsi = np.empty((23, n_inputs, 3, 8))
    for i in range(23):
        psi[i], dpsi[i] = unit_output_reference(z[i], x, output, 2.0)
    code = OUTPUTS[output]
    assert np.abs(two_layer.mean_output(z, a, x, code, 2.0) - a @ psi).max() <= 1e-13
    values, grads = two_layer.pullback(z, x, r, code, 2.0)
    assert np.abs(values - psi @ r).max() <= 1e-13
    assert np.abs(grads - np.einsum("n,inhk->ihk", r, dpsi)).max() <= 1e-13
    assert np.abs(two_layer.unit_outputs(z, x, code, 2.0) - psi).max() <= 1e-15
    values_only, empty = two_layer.pullback(z, x, r, code, 2.0, want_grad=False)
    assert np.array_equal(values_only, values) and empty.shape[0] == 0


def test_two_layer_gradient_is_the_derivative() -> None:
    """Σ_n r_n ψ(x_n; Z) differentiated by central differences (pre-activations kept away from the
    ReLU kink by choosing a step far below min |W₁x|)."""
    z = _units(3, 2, 4, 5)
    x = _inputs(9, 4, 6)
    r = np.random.default_rng(7).normal(size=9)
    _, grads = two_layer.pullback(z, x, r, two_layer.QUADEXP, 2.0)
    kink = np.abs(np.einsum("ihk,nk->inh", z[:, :, :4], x)).min()
    h = min(1e-6, 0.1 * kink)
    for idx in [(0, 0, 0), (1, 1, 4), (2, 0, 3)]:
        zp, zm = z.copy(), z.copy()
        zp[idx] += h
        zm[idx] -= h
        vp = two_layer.pullback(zp, x, r, two_layer.QUADEXP, 2.0, False)[0][idx[0]]
        vm = two_layer.pullback(zm, x, r, two_layer.QUADEXP, 2.0, False)[0][idx[0]]
        assert (vp - vm) / (2 * h) == pytest.approx(grads[idx], abs=1e-8)


def test_two_layer_does_not_depend_on_thread_count() -> None:
    assert numba.config.NUMBA_NUM_THREADS >= 2, "this machine gives Numba a single thread"
    z = _units(50, 3, 10, 8)
    x = _inputs(70, 10, 9)
    a = np.full(50, 0.02)
    r = np.random.default_rng(10).normal(size=70)
    results = []
    for threads in (1, numba.config.NUMBA_NUM_THREADS):
        numba.set_num_threads(threads)
        try:
            f = two_layer.mean_output(z, a, x, two_layer.QUADEXP, 2.0)
            v, g = two_layer.pullback(z, x, r, two_layer.QUADEXP, 2.0)
            k = gram.kernel_matrix(x, x, kernels.GAUSSIAN, 0.5)
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        results.append(np.concatenate([f, v, g.ravel(), k.ravel()]).view(np.uint64))
    assert np.array_equal(results[0], results[1])
