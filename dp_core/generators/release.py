"""A stored release's samples as generator points (aeot.md §6, §8 "Multimodal releases").

Release samples are samples of a mechanism's parameter θ. Fitting on them is post-processing
(no charge). A k-means release is permutation-multimodal (label switching): its centres are put
in the canonical order (each sample's k centres sorted lexicographically, the rule of
``dp_core.privacy.utilities.kmeans.canonical_centres``) before fitting, so the generator does
not mix permutations.
"""

from __future__ import annotations

import numpy as np

from dp_core.errors import InvalidParameter
from dp_core.types import FloatArray

__all__ = ["release_points"]


def release_points(samples: object, *, kmeans_k: int | None = None) -> FloatArray:
    """Release samples (m, p) (or (m,) for a scalar θ) as float64 points (m, p).

    With ``kmeans_k = k`` each row is k centres of dimension p/k, reordered lexicographically.
    """
    arr = np.asarray(samples, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] < 1:
        raise InvalidParameter("samples", "must be a non-empty (m, p) array")
    if kmeans_k is None:
        return np.ascontiguousarray(arr)
    m, p = arr.shape
    if kmeans_k < 1 or p % kmeans_k:
        raise InvalidParameter("kmeans_k", "must divide the sample dimension")
    centres = arr.reshape(m, kmeans_k, p // kmeans_k)
    out = np.empty_like(centres)
    for s in range(m):
        out[s] = centres[s][np.lexsort(centres[s].T[::-1])]
    return np.ascontiguousarray(out.reshape(m, p))
