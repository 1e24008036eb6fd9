"""Utility families with sensitivities derived by construction (certificates note §9).

Each module owns one family (``custom``: a user-written per-record loss): its public domain,
its Sensitivity, how records are clipped and summarised, and the loss L = -u the SHK potential
V = λL is built from.
"""

from dp_core.privacy.utilities.base import (
    Sensitivity,
    UtilityFamily,
    UtilityPotential,
    sum_form_sensitivity,
)
from dp_core.privacy.utilities.custom import CustomUtility
from dp_core.privacy.utilities.kmeans import KMeans, canonical_centres
from dp_core.privacy.utilities.mean import ClippedMean
from dp_core.privacy.utilities.mode import Mode
from dp_core.privacy.utilities.quantile import Quantile
from dp_core.privacy.utilities.regression import LinearRegression, LogisticRegression

__all__ = [
    "ClippedMean",
    "CustomUtility",
    "KMeans",
    "LinearRegression",
    "LogisticRegression",
    "Mode",
    "Quantile",
    "Sensitivity",
    "UtilityFamily",
    "UtilityPotential",
    "canonical_centres",
    "sum_form_sensitivity",
]
