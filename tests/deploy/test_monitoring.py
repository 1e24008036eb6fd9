"""Prometheus and Grafana configuration against what a real privflow app exports.

A real app (SQLite store, kernels not warmed) registers a dataset, answers one cheap exact
release and refuses one over budget, so its labelled series exist; its /metrics is then the
reference. Every metric that the Prometheus rules or the Grafana dashboard query must be one it
exports, every label they group or filter by must be one those metrics carry, and the scrape
and provisioning paths must agree with docker-compose.yml.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.settings import Settings
from tests.deploy.dockerfile import ROOT

DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "privflow.json"
ADMIN_KEY = "pf_deploy_test_admin_key_0123456789"
SCRAPE_TOKEN = "deploy-test-scrape-token-0123456789"
# Series Prometheus adds itself, and the labels it attaches to every scraped sample.
PROMETHEUS_SERIES = {"up": set[str]()}
TARGET_LABELS = {"instance", "job"}
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
}
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "gauge": ("",),
    "unknown": ("",),
}


@dataclass
class Exported:
    """Series names in the app's /metrics and the labels seen on each (None: no sample yet,
    labels unknown)."""

    labels: dict[str, set[str] | None] = field(default_factory=dict)

    def knows(self, name: str) -> bool:
        return name in self.labels


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    store = tmp_path_factory.mktemp("metrics") / "privflow.db"
    settings = Settings(
        warm_on_startup=False,
        database_url=f"sqlite:///{store}",
        admin_key=ADMIN_KEY,
        metrics_key=SCRAPE_TOKEN,
    )
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with TestClient(create_app(settings)) as client:
        dataset = client.post(
            "/v1/datasets",
            json={
                "name": "ages",
                "columns": [{"name": "age", "type": "float", "lower": 0, "upper": 100}],
                "records": [[float(20 + i % 50)] for i in range(50)],
                "budget": {"epsilon": 1.0},
            },
            headers=headers,
        )
        assert dataset.status_code == 201, dataset.text
        release = {
            "utility": {"family": "quantile", "column": "age", "q": 0.5},
            "epsilon": 0.6,
            "method": "exact",
        }
        path = f"/v1/datasets/{dataset.json()['id']}/samples"
        first = client.post(path, json=release, headers=headers)
        assert first.status_code == 201, first.text
        refused = client.post(path, json=release, headers=headers)
        assert refused.status_code == 409, refused.text  # a refusal by code
        # Scraped as Prometheus does (deploy/prometheus.yml): with the scrape token.
        response = client.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"})
    assert response.status_code == 200
    found = Exported()
    for family in text_string_to_metric_families(response.text):
        for suffix in _SUFFIXES[family.type]:
            found.labels.setdefault(family.name + suffix, None)
        for sample in family.samples:
            seen = found.labels.get(sample.name) or set()
            found.labels[sample.name] = seen | set(sample.labels)
    for name, labels in PROMETHEUS_SERIES.items():
        found.labels[name] = set(labels)
    return found


# ------------------------------------------------------------------------ reading queries


@dataclass(frozen=True)
class Query:
    where: str
    expr: str
    legend: str = ""


def _rule_queries() -> list[Query]:
    rules = yaml.safe_load((DEPLOY / "prometheus-rules.yml").read_text())
    return [
        Query(f"prometheus-rules.yml {rule.get('alert') or rule.get('record')}", rule["expr"])
        for group in rules["groups"]
        for rule in group["rules"]
    ]


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _dashboard_queries() -> list[Query]:
    return [
        Query(
            f"dashboard panel {panel['title']!r} {target['refId']}",
            target["expr"],
            target.get("legendFormat", ""),
        )
        for panel in _panels(_dashboard()["panels"])
        for target in panel.get("targets", [])
    ]


def _queries() -> list[Query]:
    return _rule_queries() + _dashboard_queries()


def _strip(expr: str) -> str:
    """The expression without string literals, durations/subqueries and $variables."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    return re.sub(r"\$\{?\w+\}?", "", expr)


def metric_names(expr: str) -> set[str]:
    """Names of the series a PromQL expression selects."""
    text = _strip(expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", text):
        name = match.group()
        if re.match(r"\s*\(", text[match.end() :]):  # a function
            continue
        if name.lower() not in PROMQL_WORDS:
            names.add(name)
    return names


def label_names(expr: str) -> set[str]:
    """Labels a PromQL expression filters on or groups by."""
    text = _strip(expr)
    labels: set[str] = set()
    for matchers in re.findall(r"\{([^}]*)\}", text):
        labels.update(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
    for grouping in re.findall(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", text
    ):
        labels.update(part.strip() for part in grouping.split(",") if part.strip())
    return labels


def _allowed_labels(exported: Exported, names: set[str]) -> set[str] | None:
    allowed = set(TARGET_LABELS)
    for name in names:
        labels = exported.labels[name]
        if labels is None:
            return None  # a family with no sample yet (e.g. sampler counters): labels unknown
        allowed |= labels
    return allowed


# --------------------------------------------------------------------------------- tests


def test_the_parser_reads_promql() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (route, le) (rate(a_bucket{status=~"5..", x!="y"}'
        "[$__rate_interval]))) / ignoring(instance) max(b) > 0.5 and on() c offset 5m"
    )
    assert metric_names(expr) == {"a_bucket", "b", "c"}
    assert label_names(expr) == {"route", "le", "status", "x", "instance"}


def test_there_are_queries_to_check() -> None:
    assert len(_rule_queries()) >= 3
    assert len(_dashboard_queries()) >= 10


@pytest.mark.parametrize("query", _queries(), ids=lambda q: q.where)
def test_queries_use_exported_metrics_and_labels(exported: Exported, query: Query) -> None:
    names = metric_names(query.expr)
    assert names, f"{query.where}: no metric in {query.expr!r}"
    missing = sorted(name for name in names if not exported.knows(name))
    assert not missing, f"{query.where}: not exported by privflow: {missing}"
    allowed = _allowed_labels(exported, names)
    if allowed is None:
        return
    unknown = label_names(query.expr) - allowed
    assert not unknown, f"{query.where}: labels {sorted(unknown)} not on {sorted(names)}"
    legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", query.legend))
    assert legend <= allowed, f"{query.where}: legend uses {sorted(legend - allowed)}"


def test_the_dashboard_variable_reads_an_exported_label(exported: Exported) -> None:
    for variable in _dashboard()["templating"]["list"]:
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", text)
        assert match, text
        metric, label = match.groups()
        labels = exported.labels.get(metric)
        assert labels is not None and label in labels, text


def test_the_dashboard_covers_the_operator_questions() -> None:
    exprs = " ".join(q.expr for q in _dashboard_queries())
    for needle in (
        "privflow_budget_spent_epsilon",
        "privflow_budget_remaining_epsilon",
        "privflow_releases_total",
        "privflow_epsilon_charged_total",
        "histogram_quantile(0.5, sum by (route, le) (rate(privflow_http_request_duration",
        "histogram_quantile(0.99, sum by (route, le) (rate(privflow_http_request_duration",
        "privflow_refusals_total",
        'status=~"4..|5.."',
        "privflow_job_queue_depth",
        "privflow_job_duration_seconds_bucket",
    ):
        assert needle in exprs, needle
    # Every replica reports the shared ledger: budget gauges are never summed over replicas.
    assert not re.search(r"sum\b[^()]*\(\s*privflow_budget_", exprs)


def test_every_panel_uses_the_provisioned_datasource() -> None:
    datasources = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    assert len(datasources) == 1
    source = datasources[0]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    dashboard = _dashboard()
    ids = [panel["id"] for panel in _panels(dashboard["panels"])]
    assert len(ids) == len(set(ids))
    for panel in _panels(dashboard["panels"]):
        for item in [panel, *panel.get("targets", [])]:
            if "datasource" in item:
                assert item["datasource"] == {"type": "prometheus", "uid": source["uid"]}


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path of a service's bind mounts under ./deploy."""
    mounts = {}
    for mount in service.get("volumes", []):
        parts = mount.split(":")
        if parts[0].startswith("./"):
            mounts[parts[1]] = parts[0]
    return mounts


def test_paths_and_targets_agree_with_the_compose_file() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    # Prometheus finds every privflow replica by DNS on the service name and port.
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    job = jobs["privflow"]
    assert job["metrics_path"] == "/metrics"
    (dns,) = job["dns_sd_configs"]
    assert dns["names"] == ["privflow"] and dns["type"] == "A"
    assert [str(dns["port"])] == [str(p) for p in compose["privflow"]["expose"]]
    prometheus_mounts = _mounts(compose["prometheus"])
    assert prometheus_mounts["/etc/prometheus/prometheus.yml"] == "./deploy/prometheus.yml"
    for rule_file in prometheus["rule_files"]:
        assert prometheus_mounts[rule_file] == "./deploy/prometheus-rules.yml"
    # Grafana loads the provisioning and the dashboard from where the compose file mounts them.
    grafana_mounts = _mounts(compose["grafana"])
    assert grafana_mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "privflow.yml").read_text()
    )["providers"][0]
    dashboards = Path(grafana_mounts[provider["options"]["path"]])
    assert (ROOT / dashboards / DASHBOARD.name).is_file()
