"""The privacy core: utility families, the exponential mechanism, certificates, accounting.

- ``utilities``     one module per family; sensitivities by construction (note §9)
- ``schedule``      public parameters -> λ, flow time, steps, particles (note (10)); no records
- ``certificates``  route C (9) and the conversions (15)–(20); scope, bound, assumptions
- ``mechanism``     ExponentialMechanism(utility, ε).plan(m) / .sample(data, m)
- ``exact``         exact mechanisms, DP as implemented (note §7.3)
- ``accounting``    composition, conversions, the ledger admission rule (27)
- ``audit``         empirical lower bounds on ε (note (33))
"""

from dp_core.privacy.certificates import Certificate
from dp_core.privacy.mechanism import ExponentialMechanism, Plan, Release
from dp_core.privacy.utilities import (
    ClippedMean,
    KMeans,
    LinearRegression,
    LogisticRegression,
    Mode,
    Quantile,
)

__all__ = [
    "Certificate",
    "ClippedMean",
    "ExponentialMechanism",
    "KMeans",
    "LinearRegression",
    "LogisticRegression",
    "Mode",
    "Plan",
    "Quantile",
    "Release",
]
