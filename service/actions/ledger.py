"""Ledger reads: a dataset's entries (admins: all; analysts: their own) and their composition."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from dp_core.privacy.accounting import compose_basic, zcdp_to_approx_dp
from service.actions.access import check_page, visible_dataset
from service.context import ServiceContext
from service.errors import ApiError
from service.store.keys import KeyRecord
from service.store.leases import sweep_orphans
from service.store.ledger import LedgerEntry, list_charges, list_entries

__all__ = [
    "DEFAULT_DELTAS",
    "MAX_DELTAS",
    "composition",
    "entry_out",
    "list_ledger",
    "parse_deltas",
]

DEFAULT_DELTAS: tuple[float, ...] = tuple(10.0 ** (k / 2.0) for k in range(-24, -1))
"""δ grid of :func:`composition` when the request names none: 1e-12 to 1e-1, half decades."""
MAX_DELTAS = 64


def entry_out(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "release_id": entry.release_id,
        "key_id": entry.key_id,
        "created_at": entry.created_at,
        "utility": entry.utility,
        "method": entry.method,
        "charged": {"epsilon": entry.charged_epsilon, "delta": entry.charged_delta},
        "certificate": entry.certificate,
        "status": entry.status,
    }


def list_ledger(
    ctx: ServiceContext, key: KeyRecord, dataset_id: str, limit: int, cursor: str | None
) -> dict[str, Any]:
    check_page(limit, cursor)
    with ctx.store.transaction() as conn:
        visible_dataset(conn, key, dataset_id)
        sweep_orphans(conn, ctx.settings.lease_seconds)  # show dead runs as aborted at once
        rows, next_cursor = list_entries(
            conn, dataset_id, None if key.role == "admin" else key.id, limit, cursor
        )
    return {"items": [entry_out(e) for e in rows], "next_cursor": next_cursor}


def parse_deltas(values: Sequence[str] | None) -> list[float]:
    """``deltas`` query values (repeated and/or comma-separated) as sorted distinct floats.

    Each must be a number in (0, 1); at most :data:`MAX_DELTAS`; none given is an empty list.
    """
    pieces = [p.strip() for v in values or () for p in v.split(",") if p.strip()]
    if len(pieces) > MAX_DELTAS:
        raise ApiError.invalid("deltas", f"at most {MAX_DELTAS} values")
    deltas = set()
    for piece in pieces:
        try:
            delta = float(piece)
        except ValueError:
            raise ApiError.invalid("deltas", f"{piece[:40]!r} is not a number") from None
        if not 0.0 < delta < 1.0:
            raise ApiError.invalid("deltas", "every delta must lie in (0, 1)")
        deltas.add(delta)
    return sorted(deltas)


def _bound(epsilon: float) -> float | None:
    return epsilon if math.isfinite(epsilon) else None


def composition(
    ctx: ServiceContext, key: KeyRecord, dataset_id: str, deltas: Sequence[str] | None
) -> dict[str, Any]:
    """The dataset's (ε, δ) curve from every ledger entry's charge, by two accountants.

    ``pure``: basic composition (23) of the charged pure ε, ``(Σεᵢ, Σδᵢ)``, which holds at every
    δ ≥ Σδᵢ (null below). ``zcdp``: ``ε_(21)(Σρᵢ, δ)`` (the conversion of
    ``dp_core.privacy.accounting``), null when some charge carries δ > 0 (then only basic
    composition applies, as in ``ledger_epsilon``). Analysts may read it too: it is the
    dataset's budget-level state that decides whether their own releases are admitted, two sums
    over the whole ledger, and names no entry of another key. With no ``deltas`` the grid is
    :data:`DEFAULT_DELTAS` plus the budget's δ when it is positive (see :func:`parse_deltas`).
    """
    asked = parse_deltas(deltas)
    with ctx.store.transaction() as conn:
        dataset = visible_dataset(conn, key, dataset_id)
        charges = list_charges(conn, dataset_id)
    grid = asked or sorted({*DEFAULT_DELTAS, dataset.budget_delta} - {0.0})
    pure_epsilon, delta_sum = compose_basic(
        [c.pure_epsilon for c in charges], [c.delta for c in charges]
    )
    rho = math.fsum(c.zcdp_rho for c in charges)
    return {
        "dataset_id": dataset.id,
        "accountant": dataset.accountant,
        "budget": {"epsilon": dataset.budget_epsilon, "delta": dataset.budget_delta},
        "charged": {"pure_epsilon": pure_epsilon, "zcdp_rho": rho, "delta": delta_sum},
        "certified": {
            "pure_epsilon": math.fsum(c.certified_epsilon for c in charges),
            "zcdp_rho": math.fsum(c.certified_rho for c in charges),
        },
        "pure": [[d, _bound(pure_epsilon) if d >= delta_sum else None] for d in grid],
        "zcdp": [[d, None if delta_sum > 0.0 else _bound(zcdp_to_approx_dp(rho, d))] for d in grid],
    }
