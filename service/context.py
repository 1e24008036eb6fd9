"""The per-app service context: settings, store, worker pool, metrics and the records cache.

``create_app`` builds one :class:`ServiceContext` and keeps it on ``app.state.ctx``; actions take
it as their first argument, so they are callable without FastAPI (tests, the CLI).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from service.jobs import JobPool
from service.metrics import Metrics
from service.settings import Settings
from service.store.datasets import DatasetRecord, load_records
from service.store.db import Store

__all__ = ["RecordsCache", "ServiceContext"]


class RecordsCache:
    """Decoded records of recently used datasets (immutable once created), least recent out.

    Holds private data in process memory only; bounded by ``max_bytes``.
    """

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, store: Store, dataset: DatasetRecord) -> np.ndarray:
        with self._lock:
            hit = self._items.get(dataset.id)
            if hit is not None:
                self._items.move_to_end(dataset.id)
                return hit
        with store.read() as conn:
            records = load_records(conn, dataset).copy()  # own the memory, read-only below
        records.setflags(write=False)
        with self._lock:
            self._items[dataset.id] = records
            while sum(a.nbytes for a in self._items.values()) > self.max_bytes and self._items:
                self._items.popitem(last=False)
        return records


@dataclass
class ServiceContext:
    settings: Settings
    store: Store
    pool: JobPool
    metrics: Metrics
    records: RecordsCache = field(default_factory=RecordsCache)
