"""The budget ledger: the atomic charge, entry life-cycle and the budget a key may see.

:func:`reserve` is the only writer of a dataset's running sums. In one transaction it locks the
dataset row (and the analyst's grant row), applies the privacy core's admission rule
(``dp_core.privacy.ledger.admits``, certificates note (27), or basic composition (23) for the
default ``pure`` accountant), checks the analyst's cap, adds the charge and inserts the entry
with status ``running``. Only then may records be read (privacy rule 4). An entry ends
``succeeded``, ``failed``, ``cancelled`` or ``aborted`` (its process died); the charge stays in
every case: the ledger fails closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from dp_core.privacy.ledger import (
    ADMISSION_RTOL,
    Budget,
    Charge,
    LedgerState,
    admits,
    apply_charge,
    ledger_epsilon,
)
from service.store.common import new_id, now, page
from service.store.datasets import (
    DatasetRecord,
    dataset_from_row,
    get_dataset,
    get_grant,
    public_columns,
)
from service.store.tables import datasets, grants, ledger, releases

__all__ = [
    "ACCOUNTANTS",
    "BudgetRefused",
    "EntryCharge",
    "LedgerEntry",
    "budget_view",
    "finish_entry",
    "get_release",
    "list_budgets",
    "list_charges",
    "list_entries",
    "reserve",
]

ACCOUNTANTS = ("pure", "union")
"""``pure``: basic composition of pure ε (23), one accountant fixed at registration (the
note's conservative alternative). ``union``: the union-of-filters rule (27), pure or zCDP at
δ_B."""


class BudgetRefused(Exception):
    """The charge does not fit; ``scope`` is ``dataset`` or ``grant`` (the analyst's cap)."""

    def __init__(self, scope: str) -> None:
        super().__init__(scope)
        self.scope = scope


@dataclass(frozen=True)
class LedgerEntry:
    release_id: str
    dataset_id: str
    key_id: str
    created_at: datetime
    utility: dict[str, Any]
    method: str
    charged_epsilon: float
    charged_delta: float
    certificate: dict[str, Any]
    status: str
    finished_at: datetime | None


@dataclass(frozen=True)
class EntryCharge:
    """What one entry charged the dataset (pure ε, zCDP ρ, δ) and what its certificate states.

    ``certified_*`` are the whole release's ``pure_dp.epsilon`` and ``zcdp.rho`` from the stored
    certificate; the charge is never below them (the mechanism charges a conservative plan).
    """

    pure_epsilon: float
    zcdp_rho: float
    delta: float
    certified_epsilon: float
    certified_rho: float


def _entry(row: Any) -> LedgerEntry:
    return LedgerEntry(
        row.release_id,
        row.dataset_id,
        row.key_id,
        row.created_at,
        row.utility,
        row.method,
        row.charged_epsilon,
        row.charged_delta,
        row.certificate,
        row.status,
        row.finished_at,
    )


def _state(ds: DatasetRecord) -> LedgerState:
    return LedgerState(ds.spent_pure_epsilon, ds.spent_zcdp_rho, ds.spent_delta, ds.release_count)


def _budget(ds: DatasetRecord) -> Budget:
    # ``pure``: with δ_B = 0 in the rule, only the pure filter (23) can admit.
    return Budget(ds.budget_epsilon, ds.budget_delta if ds.accountant == "union" else 0.0)


def budget_view(ds: DatasetRecord) -> dict[str, Any]:
    """API.md's ``budget`` object: totals, spent and remaining for the dataset's accountant."""
    state = _state(ds)
    if ds.accountant == "union" and ds.budget_delta > 0.0:
        eps = ledger_epsilon(state, ds.budget_delta)
        spent_delta = 0.0 if eps >= state.pure_epsilon else ds.budget_delta
    else:
        eps, spent_delta = state.pure_epsilon, state.delta
    return {
        "epsilon": ds.budget_epsilon,
        "delta": ds.budget_delta,
        "spent": {"epsilon": eps, "delta": spent_delta},
        "remaining": {
            "epsilon": max(0.0, ds.budget_epsilon - eps),
            "delta": max(0.0, ds.budget_delta - spent_delta),
        },
    }


def _within(spent: float, amount: float, cap: float | None) -> bool:
    return cap is None or spent + amount <= cap * (1.0 + ADMISSION_RTOL)


def reserve(
    conn: Connection,
    *,
    dataset_id: str,
    key_id: str,
    needs_grant: bool,
    charge: Charge,
    utility: dict[str, Any],
    method: str,
    certificate: dict[str, Any],
    runner: str,
) -> tuple[LedgerEntry, DatasetRecord]:
    """Charge ``charge`` to the dataset (and the key's grant) and open a ``running`` entry.

    Raises
    ------
    BudgetRefused
        Nothing was written; the caller answers 409 and runs nothing.
    LookupError
        No such dataset, or (``needs_grant``) no grant for the key.
    """
    ds = get_dataset(conn, dataset_id, for_update=True)
    if ds is None:
        raise LookupError("dataset")
    grant = get_grant(conn, dataset_id, key_id, for_update=True)
    if needs_grant and grant is None:
        raise LookupError("grant")
    state = _state(ds)
    if not admits(state, charge, _budget(ds)):
        raise BudgetRefused("dataset")
    epsilon, delta = charge.pure_epsilon, charge.delta
    if grant is not None and not (
        _within(grant.spent_epsilon, epsilon, grant.epsilon_cap)
        and _within(grant.spent_delta, delta, grant.delta_cap)
    ):
        raise BudgetRefused("grant")
    after = apply_charge(state, charge)
    conn.execute(
        update(datasets)
        .where(datasets.c.id == dataset_id)
        .values(
            spent_pure_epsilon=after.pure_epsilon,
            spent_zcdp_rho=after.zcdp_rho,
            spent_delta=after.delta,
            release_count=after.releases,
        )
    )
    if grant is not None:
        conn.execute(
            update(grants)
            .where(grants.c.dataset_id == dataset_id, grants.c.key_id == key_id)
            .values(
                spent_epsilon=grant.spent_epsilon + epsilon,
                spent_delta=grant.spent_delta + delta,
            )
        )
    stamp = now()
    values = {
        "release_id": new_id("rel"),
        "dataset_id": dataset_id,
        "key_id": key_id,
        "created_at": stamp,
        "utility": utility,
        "method": method,
        "charged_epsilon": epsilon,
        "charged_delta": delta,
        "charged_pure_epsilon": charge.pure_epsilon,
        "charged_zcdp_rho": charge.zcdp_rho,
        "certificate": certificate,
        "status": "running",
        "runner": runner,
        "heartbeat_at": stamp,
        "finished_at": None,
    }
    conn.execute(ledger.insert().values(**values))
    charged = get_dataset(conn, dataset_id)
    assert charged is not None
    entry = LedgerEntry(**{name: values[name] for name in LedgerEntry.__dataclass_fields__})
    return entry, charged


def finish_entry(
    conn: Connection, release_id: str, status: str, body: dict[str, Any] | None = None
) -> None:
    """Close a running entry; with ``succeeded`` store the release ``body`` (public outputs)."""
    conn.execute(
        update(ledger)
        .where(ledger.c.release_id == release_id, ledger.c.status == "running")
        .values(status=status, finished_at=now())
    )
    if body is not None:
        conn.execute(releases.insert().values(id=release_id, body=body))


def list_entries(
    conn: Connection, dataset_id: str, key_id: str | None, limit: int, cursor: str | None
) -> tuple[list[LedgerEntry], str | None]:
    """A dataset's entries in charge order; with ``key_id`` only that key's."""
    where = [ledger.c.dataset_id == dataset_id]
    if key_id is not None:
        where.append(ledger.c.key_id == key_id)
    result = page(conn, ledger, where, limit, cursor)
    return [_entry(r) for r in result.rows], result.next_cursor


def list_charges(conn: Connection, dataset_id: str) -> list[EntryCharge]:
    """Every entry's charge in charge order, whatever its status (a charge is never returned)."""
    rows = conn.execute(
        select(
            ledger.c.charged_pure_epsilon,
            ledger.c.charged_zcdp_rho,
            ledger.c.charged_delta,
            ledger.c.certificate,
        )
        .where(ledger.c.dataset_id == dataset_id)
        .order_by(ledger.c.seq)
    ).all()
    return [
        EntryCharge(
            row.charged_pure_epsilon,
            row.charged_zcdp_rho,
            row.charged_delta,
            float(row.certificate["pure_dp"]["epsilon"]),
            float(row.certificate["zcdp"]["rho"]),
        )
        for row in rows
    ]


def get_release(
    conn: Connection, release_id: str
) -> tuple[LedgerEntry, dict[str, Any] | None] | None:
    """The entry and, once it succeeded, the stored release body."""
    row = conn.execute(select(ledger).where(ledger.c.release_id == release_id)).first()
    if row is None:
        return None
    body = conn.execute(select(releases.c.body).where(releases.c.id == release_id)).scalar()
    return _entry(row), body


def list_budgets(conn: Connection) -> list[tuple[str, dict[str, Any]]]:
    """Every dataset's id and budget view (for the metrics collector)."""
    rows = conn.execute(select(*public_columns()).order_by(datasets.c.seq)).all()
    return [(row.id, budget_view(dataset_from_row(row))) for row in rows]
