"""Service metrics: the per-app Prometheus registry, its instruments and the request middleware.

Each app built by ``create_app`` gets its own ``CollectorRegistry`` (never the global default
one), so several apps in one process (tests) do not share counts. Labels come only from the
matched route template, the method and the response status: never from a raw URL, a query or a
body, so no label can carry private data or grow without bound.

Dataset ids reach label values only when the operator opts in (``dataset_labels``, the setting
``PRIVFLOW_METRICS_DATASET_LABELS``); otherwise the per-dataset series are aggregated under the
one value ``dataset="all"`` (the label stays, so dashboards and rules work either way). The
exposition is for the operator only: ``/metrics`` needs an admin key (``service.api.health``).
"""

import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

__all__ = [
    "ALL_DATASETS",
    "UNMATCHED_ROUTE",
    "BudgetCollector",
    "DatasetCounter",
    "Metrics",
    "MetricsMiddleware",
    "build_metrics",
    "render_metrics",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNMATCHED_ROUTE = "unmatched"
ALL_DATASETS = "all"
"""The ``dataset`` label value of every per-dataset series unless dataset labels are opted in."""
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class DatasetCounter:
    """A counter whose first label is a dataset id, written as :data:`ALL_DATASETS` unless
    ``dataset_labels`` is on: ``labels(dataset_id, *rest)`` as on a ``Counter``."""

    def __init__(self, counter: Counter, dataset_labels: bool) -> None:
        self.counter = counter
        self.dataset_labels = dataset_labels

    def labels(self, dataset_id: str, *rest: str) -> Counter:
        return self.counter.labels(dataset_id if self.dataset_labels else ALL_DATASETS, *rest)


@dataclass(frozen=True, slots=True)
class Metrics:
    """The instruments of one app, all registered in ``registry``."""

    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    kernels_ready: Gauge
    kernel_warm_seconds: Gauge
    releases: DatasetCounter
    epsilon_charged: DatasetCounter
    refusals: Counter
    queue_depth: Gauge
    job_seconds: Histogram
    particle_steps: Counter
    sampler_seconds: Counter
    custom_compile_seconds: Histogram


def build_metrics(dataset_labels: bool = False) -> Metrics:
    """Build a fresh registry with the service's instruments.

    Parameters
    ----------
    dataset_labels
        Label the per-dataset counters with the dataset id; when False (the default) they are
        aggregated under ``dataset="all"``.

    Returns
    -------
    Metrics
        ``privflow_http_requests_total{route, method, status}``,
        ``privflow_http_request_duration_seconds{route, method}``,
        ``privflow_kernels_ready`` (1 once warm-up compiled every kernel signature, else 0),
        ``privflow_kernel_warm_seconds`` (duration of the last completed warm-up), release and
        refusal counters, the job queue depth, job durations, sampler work and
        ``privflow_custom_utility_compile_seconds`` (kernels compiled for custom losses;
        cache hits are not observed). Per-dataset
        budget gauges are added by :class:`BudgetCollector` (read from the store at scrape
        time, so every replica reports the shared ledger).
    """
    registry = CollectorRegistry()
    return Metrics(
        registry=registry,
        requests=Counter(
            "privflow_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ("route", "method", "status"),
            registry=registry,
        ),
        latency=Histogram(
            "privflow_http_request_duration_seconds",
            "Time from request start to the end of the response body, by route template.",
            ("route", "method"),
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        ),
        kernels_ready=Gauge(
            "privflow_kernels_ready",
            "1 once every Numba kernel signature the service uses is compiled, else 0.",
            registry=registry,
        ),
        kernel_warm_seconds=Gauge(
            "privflow_kernel_warm_seconds",
            "Seconds the last completed kernel warm-up took (compile or cache load).",
            registry=registry,
        ),
        releases=DatasetCounter(
            Counter(
                "privflow_releases",
                "Releases charged (admitted by the ledger), by dataset (id or all) and method.",
                ("dataset", "method"),
                registry=registry,
            ),
            dataset_labels,
        ),
        epsilon_charged=DatasetCounter(
            Counter(
                "privflow_epsilon_charged",
                "Pure epsilon charged to datasets by admitted releases, by dataset (id or all).",
                ("dataset",),
                registry=registry,
            ),
            dataset_labels,
        ),
        refusals=Counter(
            "privflow_refusals",
            "Requests refused with a problem code (budget_exceeded, overloaded, ...).",
            ("code",),
            registry=registry,
        ),
        queue_depth=Gauge(
            "privflow_job_queue_depth",
            "Work items waiting or running in this process's worker pool.",
            registry=registry,
        ),
        job_seconds=Histogram(
            "privflow_job_duration_seconds",
            "Wall time of releases and jobs in the worker pool, by kind.",
            ("kind",),
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        ),
        particle_steps=Counter(
            "privflow_sampler_particle_steps",
            "Particle-steps computed by samplers and flows (throughput = rate / seconds rate).",
            ("flow",),
            registry=registry,
        ),
        sampler_seconds=Counter(
            "privflow_sampler_seconds",
            "Seconds spent in samplers and flows.",
            ("flow",),
            registry=registry,
        ),
        custom_compile_seconds=Histogram(
            "privflow_custom_utility_compile_seconds",
            "Seconds spent compiling a kernel for a custom utility's loss (cache misses only).",
            buckets=(0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0),
            registry=registry,
        ),
    )


class BudgetCollector(Collector):
    """Budget gauges read from the store at scrape time.

    Exposes ``privflow_budget_epsilon``, ``privflow_budget_spent_epsilon`` and
    ``privflow_budget_remaining_epsilon`` by dataset id when ``dataset_labels`` is on, else
    summed over every dataset under ``dataset="all"``, and
    ``privflow_budget_min_remaining_fraction``, the smallest remaining / total epsilon of any
    dataset (absent while there is none), which needs no dataset label to alert on. These are
    the same public numbers ``GET /v1/datasets/{id}`` returns to an admin, never anything
    computed from records.
    """

    def __init__(
        self, read: Callable[[], list[tuple[str, dict[str, Any]]]], dataset_labels: bool = False
    ) -> None:
        self._read = read
        self._dataset_labels = dataset_labels

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            budgets = self._read()
        except Exception:  # a scrape must not fail because the database is away
            return
        families = {
            name: GaugeMetricFamily(f"privflow_budget_{name}", help_text, labels=["dataset"])
            for name, help_text in (
                ("epsilon", "Total epsilon of the dataset's budget."),
                ("spent_epsilon", "Epsilon the dataset's ledger has spent."),
                ("remaining_epsilon", "Epsilon the dataset has left."),
            )
        }
        rows = [
            (
                dataset_id,
                budget["epsilon"],
                budget["spent"]["epsilon"],
                budget["remaining"]["epsilon"],
            )
            for dataset_id, budget in budgets
        ]
        if rows and not self._dataset_labels:
            total = sum(row[1] for row in rows)
            spent = sum(row[2] for row in rows)
            remaining = sum(row[3] for row in rows)
            rows = [(ALL_DATASETS, total, spent, remaining)]
        for label, total, spent, remaining in rows:
            families["epsilon"].add_metric([label], total)
            families["spent_epsilon"].add_metric([label], spent)
            families["remaining_epsilon"].add_metric([label], remaining)
        yield from families.values()
        fractions = [
            budget["remaining"]["epsilon"] / budget["epsilon"]
            for _, budget in budgets
            if budget["epsilon"] > 0
        ]
        lowest = GaugeMetricFamily(
            "privflow_budget_min_remaining_fraction",
            "Smallest remaining / total epsilon over every dataset (no dataset label needed).",
        )
        if fractions:
            lowest.add_metric([], min(fractions))
        yield lowest


def render_metrics(metrics: Metrics, accept: str | None) -> tuple[bytes, str]:
    """Encode ``metrics.registry`` in the exposition format the ``Accept`` header asks for.

    Returns
    -------
    (body, content_type)
        Prometheus text format unless OpenMetrics is requested; the content type is
        prometheus_client's.
    """
    encoder, content_type = choose_encoder(accept or "")
    return encoder(metrics.registry), content_type


class MetricsMiddleware:
    """ASGI middleware counting and timing every HTTP request by its matched route template.

    The router stores the matched route in ``scope["route"]``; its ``path`` is the template
    (``/v1/datasets/{id}``), never the raw URL. Requests no route matched are labelled
    ``"unmatched"``, and methods outside the standard set ``"OTHER"``.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        status = 500  # what the client sees if the app raises before starting a response
        start = time.perf_counter()

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            elapsed = time.perf_counter() - start
            route = _route_template(scope)
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route, method).observe(elapsed)


def _route_template(scope: Scope) -> str:
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE
