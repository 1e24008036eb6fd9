"""The mode utility over a public finite set of categories (note §9.5; API.md ``mode``).

``u(D, r) = #{x ∈ D : x = r}``. add/remove: Δu = Δ_osc = 1; replace-one: Δu = 1, Δ_osc = 2.
There is no transport on a finite set, so SHK adds nothing: ``method = exact`` only, via the
exact base-2 exponential mechanism (note (31)). Records outside the categories are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dp_core.errors import InvalidParameter
from dp_core.privacy.utilities.base import Sensitivity, check_neighbouring, describe

__all__ = ["Mode"]


@dataclass(frozen=True)
class Mode:
    """Most frequent category among public ``categories``. Records: (n,) of category labels."""

    categories: tuple[str, ...]
    family: str = "mode"

    def __post_init__(self) -> None:
        if len(self.categories) < 1 or len(set(self.categories)) != len(self.categories):
            raise InvalidParameter("utility.categories", "need distinct categories")

    def sensitivity(self, neighbouring: str, n_max: int) -> Sensitivity:
        check_neighbouring(neighbouring)
        osc = 1.0 if neighbouring == "add_remove" else 2.0
        return Sensitivity(1.0, osc, float(n_max))

    def counts(self, records: Any) -> list[int]:
        """Integer scores (counts per category, in category order)."""
        index = {c: i for i, c in enumerate(self.categories)}
        counts = [0] * len(self.categories)
        for value in np.asarray(records).ravel().tolist():
            position = index.get(str(value))
            if position is None:
                raise InvalidParameter("records", "a record is not one of the categories")
            counts[position] += 1
        return counts

    def describe(self) -> dict[str, Any]:
        return describe(self)
