"""The image as CI can check it without a Docker engine.

The static tests read the Dockerfile (multi-stage, slim Python, non-root, kernels warmed at build
time into a cache the runtime user owns, HEALTHCHECK on /readyz, no secrets). The last test
replays the runtime stage: the same CMD with the same ENV, against a real PostgreSQL, waiting
for readiness with the HEALTHCHECK's own command, so CI runs the service as the image would.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from tests.deploy.dockerfile import (
    ROOT,
    Stage,
    exec_form,
    healthcheck,
    load,
    stage_args,
    stage_env,
)

IMAGE_VENV = "/opt/venv"  # where the builder installs the project; PATH starts with its bin/
IMAGE_BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # python image
SECRET_NAME = re.compile(r"KEY|PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|PGPASS", re.IGNORECASE)
READY_TIMEOUT_S = 600.0  # a cold checkout compiles every kernel first (~80 s on 2 cores)
STOP_TIMEOUT_S = 30.0  # compose's stop_grace_period for privflow
KERNELS_LOADED_TIMEOUT_S = 600.0  # cached kernels load in seconds; a cold cache compiles them


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return load()


@pytest.fixture(scope="module")
def runtime(dockerfile: tuple[dict[str, str], list[Stage]]) -> Stage:
    return dockerfile[1][-1]


def _cmd(stage: Stage) -> list[str]:
    return exec_form(stage.last("CMD").args, "CMD")


def _flag(command: list[str], flag: str) -> str:
    assert flag in command, f"{flag} missing from CMD {command}"
    return command[command.index(flag) + 1]


# ---------------------------------------------------------------------------- static checks


def test_two_stages_on_slim_python_311(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    _, stages = dockerfile
    assert [stage.name for stage in stages] == ["builder", "runtime"]
    for stage in stages:
        assert stage.base.startswith("python:3.11-slim"), stage.base
    runtime = stages[-1]
    copies = [i.args for i in runtime.all("COPY")]
    assert copies == [f"--from=builder {IMAGE_VENV} {IMAGE_VENV}"], (
        "the runtime stage takes only the built venv from the builder"
    )


def test_runtime_user_is_not_root_and_warms_the_kernels_into_its_own_cache(runtime: Stage) -> None:
    keywords = [i.keyword for i in runtime.instructions]
    user = runtime.last("USER").args.split(":")[0]
    assert user not in {"root", "0"}
    user_at = keywords.index("USER")
    env = stage_env(runtime, {"PATH": IMAGE_BASE_PATH})
    cache = env["NUMBA_CACHE_DIR"]
    # The cache directory is created and handed to the runtime user before USER ...
    setup = " ".join(i.args for i in runtime.instructions[:user_at] if i.keyword == "RUN")
    assert f"mkdir -p {cache}" in setup
    assert f"chown {user}:{user} {cache}" in setup
    # ... and `privflow warm` runs as that user afterwards, so the kernels ship in the image.
    warm = [
        n
        for n, i in enumerate(runtime.instructions)
        if i.keyword == "RUN" and i.args == "privflow warm"
    ]
    assert warm and warm[0] > user_at
    assert env["PATH"].startswith(f"{IMAGE_VENV}/bin:")


def test_torch_pin_matches_pyproject(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = [
        d for d in pyproject["project"]["dependencies"] if d.replace(" ", "").startswith("torch==")
    ]
    assert len(pins) == 1
    builder = dockerfile[1][0]
    assert f"torch=={stage_args(builder)['TORCH_VERSION']}" == pins[0].replace(" ", "")


def test_the_build_context_holds_what_the_builder_copies() -> None:
    _, stages = load()
    allowed = {
        line[1:].strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for instruction in stages[0].all("COPY"):
        *sources, _ = instruction.args.split()
        for source in sources:
            assert source.rstrip("/") in allowed, f"{source} is not in .dockerignore's allow-list"
            assert (ROOT / source).exists(), source


def test_command_is_privflow_serve_on_the_exposed_port(runtime: Stage) -> None:
    command = _cmd(runtime)
    assert command[:2] == ["privflow", "serve"]
    assert _flag(command, "--host") == "0.0.0.0"
    assert runtime.last("EXPOSE").args.split() == [_flag(command, "--port")]


def test_healthcheck_asks_readyz_on_the_served_port(runtime: Stage) -> None:
    check = healthcheck(runtime)
    port = _flag(_cmd(runtime), "--port")
    assert check.command[:2] == ["python", "-c"]
    assert f"http://127.0.0.1:{port}/readyz" in check.command[2]
    assert "urllib.request" in check.command[2]  # no curl in a slim image
    for option in ("interval", "timeout", "start-period", "retries"):
        assert option in check.options


def test_no_secret_is_baked_into_the_image(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    global_args, stages = dockerfile
    for stage in stages:
        env = stage_env(stage, {})
        names = [*env, *stage_args(stage), *global_args]
        assert not [n for n in names if SECRET_NAME.search(n)], names
        url = env.get("PRIVFLOW_DATABASE_URL")
        if url is not None:
            assert make_url(url).password is None


# Files of the packages that the non-editable install leaves out, with the reason.
NOT_SHIPPED = {
    "service/store/migrations/script.py.mako": "Alembic's template for `alembic revision` only",
}


def test_the_image_install_ships_every_package_file(
    dockerfile: tuple[dict[str, str], list[Stage]], tmp_path: Path
) -> None:
    """CI installs the project in editable mode, the image with ``pip install .``: a module,
    migration, template or asset missing from the wheel would break only the image."""
    builder = dockerfile[1][0]
    context = tmp_path / "context"
    ignore = shutil.ignore_patterns("__pycache__", "*.py[cod]", "*.nbi", "*.nbc", "*.db*")
    packages: list[str] = []
    for instruction in builder.all("COPY"):
        *sources, _ = instruction.args.split()
        for source in sources:
            path = ROOT / source
            if path.is_dir():
                shutil.copytree(path, context / source, ignore=ignore)
                packages.append(source)
            else:
                context.mkdir(exist_ok=True)
                shutil.copy2(path, context / source)
    assert sorted(packages) == ["dp_core", "service"]
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    built = subprocess.run(
        [*pip_wheel, "-q", "-w", str(tmp_path / "wheel"), str(context)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "wheel").glob("privflow-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    expected = {
        path.relative_to(context).as_posix()
        for package in packages
        for path in (context / package).rglob("*")
        if path.is_file()
    }
    assert expected - shipped == set(NOT_SHIPPED)


# ---------------------------------------------------------------------- the image, replayed


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _host_env(runtime: Stage, tmp_path: Path, database_url: str, admin_key: str) -> dict[str, str]:
    """The runtime stage's environment with the image's paths mapped to this checkout.

    Started from nothing (as a container is): the ENV lines verbatim, except that the image's
    venv (``/opt/venv``) is the venv running these tests, the image's base PATH is this host's,
    and NUMBA_CACHE_DIR (the cache ``privflow warm`` filled at build time) is this checkout's
    kernel cache: the caller's NUMBA_CACHE_DIR, or Numba's default beside the sources. The
    secrets come in at run time, as the compose file gives them.
    """
    env = stage_env(runtime, {"PATH": IMAGE_BASE_PATH})
    assert env["PATH"].endswith(IMAGE_BASE_PATH)
    env["PATH"] = env["PATH"].removesuffix(IMAGE_BASE_PATH) + os.environ.get("PATH", "")
    env = {key: value.replace(IMAGE_VENV, sys.prefix) for key, value in env.items()}
    env.pop("NUMBA_CACHE_DIR")
    if "NUMBA_CACHE_DIR" in os.environ:
        env["NUMBA_CACHE_DIR"] = os.environ["NUMBA_CACHE_DIR"]
    env.update(
        HOME=str(tmp_path),  # the image's WORKDIR and HOME, /var/lib/privflow
        LANG="C.UTF-8",  # set by the python base image
        PRIVFLOW_DATABASE_URL=database_url,
        PRIVFLOW_ADMIN_KEY=admin_key,
    )
    return env


def _request(
    base: str, method: str, path: str, key: str, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    request = urllib.request.Request(
        base + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        payload = response.read().decode()
        is_json = response.headers.get_content_type().endswith("json")
        return response.status, json.loads(payload) if is_json else payload


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _wait_healthy(
    check: list[str], env: dict[str, str], cwd: Path, server: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        done = subprocess.run(check, env=env, cwd=cwd, capture_output=True, timeout=30, check=False)
        if done.returncode == 0:
            return
        if server.poll() is not None:
            pytest.fail(f"privflow serve exited with {server.returncode}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            pytest.fail(f"not healthy after {READY_TIMEOUT_S:.0f} s:\n{_tail(log)}")
        time.sleep(1.0)


def test_the_image_command_serves_on_postgresql(
    runtime: Stage, postgres_url: str, tmp_path: Path
) -> None:
    port = str(_free_port())
    admin_key = "pf_" + secrets.token_urlsafe(32)
    env = _host_env(runtime, tmp_path, postgres_url, admin_key)

    # The CMD as written, bound to loopback and a free port instead of 0.0.0.0:8000.
    command = _cmd(runtime)
    image_port = _flag(command, "--port")
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = port
    check = healthcheck(runtime).command
    check = [part.replace(f"127.0.0.1:{image_port}/", f"127.0.0.1:{port}/") for part in check]
    assert check != healthcheck(runtime).command

    log = tmp_path / "privflow.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            command, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink
        )
    try:
        _wait_healthy(check, env, tmp_path, server, log)

        base = f"http://127.0.0.1:{port}"
        status, dataset = _request(
            base,
            "POST",
            "/v1/datasets",
            admin_key,
            {
                "name": "ages",
                "columns": [{"name": "age", "type": "float", "lower": 0, "upper": 100}],
                "records": [[float(20 + i % 50)] for i in range(100)],
                "budget": {"epsilon": 2.0},
            },
        )
        assert status == 201, dataset
        status, release = _request(
            base,
            "POST",
            f"/v1/datasets/{dataset['id']}/samples",
            admin_key,
            {
                "utility": {"family": "quantile", "column": "age", "q": 0.5},
                "epsilon": 0.5,
                "method": "exact",
            },
        )
        assert status == 201, release
        assert len(release["samples"]) == 1
        # The ledger lives in PostgreSQL, and /metrics reads the budget back from it.
        status, metrics = _request(base, "GET", "/metrics", admin_key)
        assert status == 200
        # No dataset id in a label value unless the operator opts in: the sum over datasets.
        assert 'privflow_budget_spent_epsilon{dataset="all"} 0.5' in metrics
        assert dataset["id"] not in metrics
        # Ready comes before the kernels (they load in the background, from the image's cache
        # here); the gauge says when they are all in.
        deadline = time.monotonic() + KERNELS_LOADED_TIMEOUT_S
        while "privflow_kernels_ready 1.0" not in metrics and time.monotonic() < deadline:
            time.sleep(1.0)
            metrics = _request(base, "GET", "/metrics", admin_key)[1]
        assert "privflow_kernels_ready 1.0" in metrics
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)  # what `docker stop` sends
        try:
            returncode = server.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            raise
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal (exit 143 in Docker).
    assert returncode in (0, -signal.SIGTERM), _tail(log)
    output = log.read_text(errors="replace")
    assert "Application shutdown complete" in output
    assert admin_key not in output  # secrets never reach the logs
