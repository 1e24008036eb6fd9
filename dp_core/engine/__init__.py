"""The numerical engine: the only Numba code in privflow (ARCHITECTURE "Engine rules").

Flat functions over float64 C-contiguous ``(N, d)`` arrays, parallel (``prange``), ``nogil``,
``cache=True``, no ``fastmath`` (except ``reassoc``/``contract`` in ``affine``, whose callers feed
no certificate, acceptance or rate); memory O((N + M) d) at any size.

- ``fastexp``      vectorisable, accurate exp and log1p on [0, 1], and an explicit FMA
- ``kernels``      fused pairwise kernel sums, gradient sums, log-sum-exp, soft-max barycentre
- ``affine``       register-blocked log-sum-exp / soft-max barycentre of affine scores (generators)
- ``semidiscrete`` top-2 of the semi-discrete scores; smoothed OT energy terms (generators)
- ``kde``          Gaussian KDE log-density (and score) at particles and at arbitrary points
- ``birth_death``  birth–death rates and the jump sweep of BDLS
- ``langevin``     MALA moves that reject proposals leaving the domain; uniform initial law
- ``rng``          per-particle SplitMix64 streams and the seeding policy
- ``potentials``   compiled public targets (Gaussian mixtures)
- ``gram``         dense kernel matrix for the DrMMD target solve
- ``matrix_maps``  per-particle regularised polar factor and Newton–Schulz (Muon)
- ``two_layer``    the student–teacher unit's reductions (mean output, pullback)
- ``parallel``     threading layer, worker wait policy and threads per run (env defaults)
- ``warmup``       the signature table by family; ``warm()`` compiles every entry once,
                   ``warm_family(name)`` one family

Importing this package compiles nothing; it fills in Numba's threading defaults where the
environment leaves them unset (:func:`dp_core.engine.parallel.configure`), before any kernel
can start Numba's threads.
"""

from dp_core.engine.parallel import configure as _configure_threads

_configure_threads()

from dp_core.engine.warmup import (  # noqa: E402
    SIGNATURES,
    FamilyReport,
    WarmReport,
    compile_stats,
    warm,
    warm_family,
)

__all__ = ["SIGNATURES", "FamilyReport", "WarmReport", "compile_stats", "warm", "warm_family"]
