"""Semi-discrete OT generators: AE-OT (hard map, top-2) and the convex smoothed AE-OT model.

research/aeot.md. A generator is fitted on *public* points ``y_j`` with weights ``ν_j`` (caller
points or a stored release's samples, never a dataset's records, aeot.md §6): heights ``h``
make the power cells of the Brenier potential (A 2) — or the soft cells of its log-sum-exp
smoothing (A 11) — carry the target masses, and new points are the images of fresh source draws
under the map: the soft-max barycentre ``T_ε`` (A 12, A 20), the hard map ``T_0`` (A 3, A 10) or
AE-OT's top-2 interpolation (A 11′).

Modules (one per model, thin): ``standardize`` (A 1 standardization), ``source`` (the uniform
and Gaussian sources and the seeded scrambled Sobol fit sample, aeot.md §2.3), ``smoothed``
(energy (A 13), L-BFGS with ε-continuation, map (A 12)), ``hard`` (hard masses (A 5, A 7), Adam
(A 8), maps (A 10) and (A 11′)), ``release`` (release samples as points, canonical k-means
order), ``generator`` (the public :func:`fit_generator` and :class:`Generator`). Imports only
``dp_core.engine``, ``dp_core.types`` and ``dp_core.errors``.
"""

from dp_core.generators.generator import (
    METHODS,
    SOURCES,
    FitReport,
    Generator,
    fit_generator,
)
from dp_core.generators.release import release_points

__all__ = ["METHODS", "SOURCES", "FitReport", "Generator", "fit_generator", "release_points"]
