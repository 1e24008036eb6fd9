"""How the SDK shows numbers to a person: 12 significant digits.

The REST API and the SDK's attributes carry exact floats (a certificate's ε is what the
service computed, to the last bit). Sums and splits of such floats pick up noise in the 16th
or 17th digit — 0.1 × 7 / 7 is 0.09999999999999999, seven charges of 0.1 add up to
0.7000000000000001 — which means nothing for a privacy parameter and only confuses a reader.
So text made for people (the ``repr`` and ``str`` of response models, the ``privflow-client``
command line) rounds every float to 12 significant digits and prints the shortest form of the
rounded value: ``1.0``, ``0.1``, ``4.7``, ``1e-06``. The dashboard follows the same rule for its
raw certificate (and shows 6 digits in its tables).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["SIGNIFICANT_DIGITS", "rounded"]

SIGNIFICANT_DIGITS = 12


def rounded(value: Any) -> Any:
    """``value`` with every float in it (also inside lists, tuples and dicts) rounded to
    :data:`SIGNIFICANT_DIGITS` significant digits; anything else unchanged. Non-finite floats
    and bools are left as they are."""
    if isinstance(value, float):
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}") if math.isfinite(value) else value
    if isinstance(value, list):
        return [rounded(v) for v in value]
    if isinstance(value, tuple):
        return tuple(rounded(v) for v in value)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return value
