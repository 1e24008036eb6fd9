"""Bind an API utility (``utility`` of a release request) to a dataset's public columns.

Produces the privacy core's family object (its sensitivities come from the columns' public
bounds) and two pure maps: records (float64 (n, c), categories as indices) -> the family's
record layout, and released samples -> JSON rows. A label column for logistic regression is a
category column with two categories (index 0 / 1) or a float column with bounds [0, 1] whose
values are rounded to 0 / 1 at 0.5 (a fixed per-record map: the sensitivity is unchanged).
A custom utility maps its aliases to float columns, whose bounds clip the records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dp_core.privacy.utilities import (
    ClippedMean,
    CustomUtility,
    KMeans,
    LinearRegression,
    LogisticRegression,
    Mode,
    Quantile,
)
from dp_core.privacy.utilities.expression import check_alias, check_loss
from service.errors import ApiError
from service.schemas.releases import (
    BoxDomain,
    KMeansUtility,
    LinearRegressionUtility,
    LogisticRegressionUtility,
    MeanUtility,
    ModeUtility,
    QuantileUtility,
)
from service.schemas.releases import CustomUtility as CustomSpec

__all__ = ["BoundUtility", "bind_utility"]


@dataclass(frozen=True)
class BoundUtility:
    family: Any
    extract: Callable[[np.ndarray], Any]
    to_json: Callable[[np.ndarray], list[list[Any]]]


def _float_rows(samples: np.ndarray) -> list[list[Any]]:
    return np.asarray(samples, dtype=np.float64).tolist()


class _Columns:
    def __init__(self, columns: list[dict[str, Any]]) -> None:
        self.by_name = {c["name"]: (j, c) for j, c in enumerate(columns)}

    def get(self, field: str, name: str, kind: str) -> tuple[int, dict[str, Any]]:
        found = self.by_name.get(name)
        if found is None:
            raise ApiError.invalid(field, f"no column named {name!r}")
        if found[1]["type"] != kind:
            raise ApiError.invalid(field, f"column {name!r} must have type {kind!r}")
        return found

    def floats(
        self, field: str, names: list[str]
    ) -> tuple[list[int], tuple[float, ...], tuple[float, ...]]:
        if len(set(names)) != len(names):
            raise ApiError.invalid(field, "columns must be distinct")
        found = [self.get(f"{field}[{i}]", n, "float") for i, n in enumerate(names)]
        return (
            [j for j, _ in found],
            tuple(float(c["lower"]) for _, c in found),
            tuple(float(c["upper"]) for _, c in found),
        )


def _label_map(columns: _Columns, name: str) -> tuple[int, Callable[[np.ndarray], np.ndarray]]:
    found = columns.by_name.get(name)
    field = "utility.label"
    if found is None:
        raise ApiError.invalid(field, f"no column named {name!r}")
    j, column = found
    if column["type"] == "category" and len(column["categories"]) == 2:
        return j, lambda values: values  # indices 0 / 1
    if column["type"] == "float" and column["lower"] == 0 and column["upper"] == 1:
        return j, lambda values: (values >= 0.5).astype(np.float64)
    raise ApiError.invalid(
        field, "needs a category column with two categories or a float column with bounds [0, 1]"
    )


def bind_utility(spec: Any, columns_meta: list[dict[str, Any]]) -> BoundUtility:
    """The family and record maps for ``spec`` on a dataset with ``columns_meta``; 422 if they
    do not fit."""
    columns = _Columns(columns_meta)
    if isinstance(spec, QuantileUtility):
        j, c = columns.get("utility.column", spec.column, "float")
        return BoundUtility(
            Quantile(spec.q, float(c["lower"]), float(c["upper"])),
            lambda r: r[:, [j]],
            _float_rows,
        )
    if isinstance(spec, MeanUtility):
        idx, lo, hi = columns.floats("utility.columns", spec.columns)
        mean = ClippedMean(lo, hi, spec.clip, form=spec.form)
        return BoundUtility(mean, lambda r: r[:, idx], _float_rows)
    if isinstance(spec, KMeansUtility):
        idx, lo, hi = columns.floats("utility.columns", spec.columns)
        kmeans = KMeans(lo, hi, spec.k, spec.clip, form=spec.form)
        return BoundUtility(kmeans, lambda r: r[:, idx], _float_rows)
    if isinstance(spec, LinearRegressionUtility):
        idx, lo, hi = columns.floats("utility.features", spec.features)
        t, target = columns.get("utility.target", spec.target, "float")
        if t in idx:
            raise ApiError.invalid("utility.target", "must not be one of the features")
        family = LinearRegression(
            feature_lower=lo,
            feature_upper=hi,
            target_lower=float(target["lower"]),
            target_upper=float(target["upper"]),
            radius=spec.radius,
            form=spec.form,
        )
        return BoundUtility(family, lambda r: r[:, [*idx, t]], _float_rows)
    if isinstance(spec, LogisticRegressionUtility):
        idx, lo, hi = columns.floats("utility.features", spec.features)
        y, to_label = _label_map(columns, spec.label)
        if y in idx:
            raise ApiError.invalid("utility.label", "must not be one of the features")
        family = LogisticRegression(
            feature_lower=lo, feature_upper=hi, radius=spec.radius, form=spec.form
        )
        return BoundUtility(
            family,
            lambda r: np.column_stack([r[:, idx], to_label(r[:, y])]),
            _float_rows,
        )
    if isinstance(spec, CustomSpec):
        return _bind_custom(spec, columns)
    if isinstance(spec, ModeUtility):
        j, c = columns.get("utility.column", spec.column, "category")
        labels = np.asarray(c["categories"], dtype=object)
        return BoundUtility(
            Mode(tuple(c["categories"])),
            lambda r: labels[r[:, j].astype(np.int64)],
            lambda s: [[str(labels[int(v)])] for v in np.asarray(s).ravel()],
        )
    raise ApiError.invalid("utility.family", "unknown utility family")


def _bind_custom(spec: CustomSpec, columns: _Columns) -> BoundUtility:
    """A custom loss over float columns; grammar errors are 422 naming ``utility.loss``."""
    aliases = list(spec.columns)
    domain = spec.domain
    dim = len(domain.box) if isinstance(domain, BoxDomain) else len(domain.ball.center)
    for alias in aliases:
        check_alias(alias)
    check_loss(spec.loss, aliases, dim)  # before the columns: hostile text never gets further
    idx, lo, hi = columns.floats("utility.columns", [spec.columns[a] for a in aliases])
    if isinstance(domain, BoxDomain):
        shape: dict[str, Any] = {"box": tuple((b[0], b[1]) for b in domain.box)}
    else:
        shape = {"ball_center": tuple(domain.ball.center), "ball_radius": domain.ball.radius}
    family = CustomUtility(spec.loss, tuple(aliases), lo, hi, spec.clip, form=spec.form, **shape)
    return BoundUtility(family, lambda r: r[:, idx], _float_rows)
