"""Slow, obviously correct NumPy/SciPy references: the independent oracles of the Numba engine.

Owns nothing new; re-exports the public names of

- :mod:`dp_core.reference.pde1d`: 1-D finite-volume solver of the mean-field SHK PDE
  (certificates note (3), §8.1) and the divergences between two laws on one grid;
- :mod:`dp_core.reference.bdls`: the finite-N birth–death Langevin sampler (flows note (F 30))
  and the pairwise primitives P1–P4 of flows note §9;
- :mod:`dp_core.reference.mmd`: the MMD flow with noise injection and DrMMD (flows note §2, §3);
- :mod:`dp_core.reference.muon`: the Muon maps (F 22)–(F 24) and the student–teacher unit.

No Numba here; tests and benchmarks only.
"""

from __future__ import annotations

from dp_core.reference.bdls import (
    KernelKind,
    ValueAndGrad,
    bdls_reference,
    birth_death_rates_reference,
    birth_death_sweep_reference,
    inside_domain_reference,
    kernel_grad_sum_reference,
    kernel_sum_reference,
    log_kde_reference,
    logsumexp_reference,
    mala_step_reference,
    softmax_barycentre_reference,
)
from dp_core.reference.mmd import (
    drmmd_features_reference,
    drmmd_reference,
    kernel_matrix_reference,
    mmd2_reference,
    mmd_flow_reference,
    three_ring,
    witness_gradient_numpy,
    witness_gradient_reference,
)
from dp_core.reference.muon import (
    muon_update_reference,
    newton_schulz5_reference,
    regularized_polar_reference,
    unit_output_reference,
)
from dp_core.reference.pde1d import (
    Boundary,
    Grid1D,
    PDESolution,
    hockey_stick,
    kl,
    log_ratio_sup_osc,
    renyi,
    solve_shk_1d,
    stationary_density,
    transport_generator_1d,
)

__all__ = [
    "Boundary",
    "Grid1D",
    "KernelKind",
    "PDESolution",
    "ValueAndGrad",
    "bdls_reference",
    "birth_death_rates_reference",
    "birth_death_sweep_reference",
    "drmmd_features_reference",
    "drmmd_reference",
    "hockey_stick",
    "inside_domain_reference",
    "kernel_grad_sum_reference",
    "kernel_matrix_reference",
    "kernel_sum_reference",
    "kl",
    "log_kde_reference",
    "log_ratio_sup_osc",
    "logsumexp_reference",
    "mala_step_reference",
    "mmd2_reference",
    "mmd_flow_reference",
    "muon_update_reference",
    "newton_schulz5_reference",
    "regularized_polar_reference",
    "renyi",
    "softmax_barycentre_reference",
    "solve_shk_1d",
    "stationary_density",
    "three_ring",
    "transport_generator_1d",
    "unit_output_reference",
    "witness_gradient_numpy",
    "witness_gradient_reference",
]
