"""Bring your own utility: a private Huber regression written as a custom loss (docs/privacy.md,
"Custom utilities").

Against a running service (``--url`` and ``--admin-key``, or ``PRIVFLOW_URL`` /
``PRIVFLOW_API_KEY``), or, with neither, a throwaway ``privflow serve`` on a temporary SQLite
database that this script starts and stops. It registers 2000 synthetic (income, spend) records
with ε = 3, checks the loss locally (``check_loss``), releases 3 samples of θ = (intercept,
slope) at ε = 1 with the Huber loss (gradient form, G = √2, which never binds here), prints them
beside the non-private Huber fit, the certificate's pure ε, and shows that a hostile expression
is refused (422 naming ``utility.loss``) with nothing charged::

    .venv/bin/python examples/custom_utility.py [--url URL --admin-key KEY]

The first release of a new expression compiles its kernel (a few seconds); later ones reuse it.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
from privflow_client import Client, CustomUtility, InvalidRequest, check_loss

ROOT = Path(__file__).resolve().parents[1]
LOSS = "huber(theta[0] + theta[1] * x - y, 1.0)"


@contextlib.contextmanager
def local_service() -> Iterator[tuple[str, str]]:
    """A ``privflow serve`` on a free port and a temporary database: (url, admin key)."""
    with tempfile.TemporaryDirectory() as tmp:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        key = "pf_" + secrets.token_urlsafe(32)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PRIVFLOW_")}
        env |= {
            "PRIVFLOW_DATABASE_URL": f"sqlite:///{Path(tmp) / 'privflow.db'}",
            "PRIVFLOW_ADMIN_KEY": key,
            "PRIVFLOW_WARM_ON_STARTUP": "false",
            "PRIVFLOW_LOG_LEVEL": "warning",
        }
        command = [sys.executable, "-m", "service.cli", "serve", "--port", str(port)]
        with subprocess.Popen(command, cwd=ROOT, env=env) as process:
            url = f"http://127.0.0.1:{port}"
            try:
                for _ in range(600):
                    with contextlib.suppress(httpx.TransportError):
                        if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                            break
                    time.sleep(0.1)
                yield url, key
            finally:
                process.terminate()
                process.wait(timeout=15)


def huber_fit(x: np.ndarray, y: np.ndarray, steps: int = 500) -> np.ndarray:
    """The non-private Huber regression (iteratively reweighted least squares), to compare."""
    design = np.column_stack([np.ones_like(x), x])
    theta = np.linalg.lstsq(design, y, rcond=None)[0]
    for _ in range(steps):
        r = design @ theta - y
        w = np.minimum(1.0, 1.0 / np.maximum(np.abs(r), 1e-12))
        theta = np.linalg.solve(design.T @ (w[:, None] * design), design.T @ (w * y))
    return theta


def run(client: Client) -> None:
    rng = np.random.default_rng(7)
    income = rng.uniform(-1, 1, 2000)
    spend = np.clip(0.3 + 0.8 * income + 0.2 * rng.standard_t(2, 2000), -2, 2)  # heavy tails
    dataset = client.datasets.create(
        "spend",
        [
            {"name": "income", "type": "float", "lower": -1, "upper": 1},
            {"name": "spend", "type": "float", "lower": -2, "upper": 2},
        ],
        np.column_stack([income, spend]),
        epsilon=3.0,
        size_bound=10_000,  # the public bound on the record count: it sizes U and the work
    )
    check_loss(LOSS, ["x", "y"], 2)  # syntax only; the service is the authority
    utility = CustomUtility(
        loss=LOSS,
        columns={"x": "income", "y": "spend"},
        domain={"box": [[-10, 10], [-5, 5]]},
        clip=math.sqrt(2),  # |ψ(r)|·|(1, x)| <= √2: the clip never binds
    )
    start = time.perf_counter()
    release = client.releases.create(dataset.id, utility, epsilon=1.0, n_samples=3)
    print(f"release in {time.perf_counter() - start:.1f} s (first use compiles the kernel)")
    print("private samples of (intercept, slope):")
    print(np.round(release.samples_array, 3))
    print("non-private Huber fit:", np.round(huber_fit(income, spend), 3))
    cert = release.certificate
    print("certificate:", cert.scope, "pure ε =", cert.pure_dp.epsilon if cert.pure_dp else None)
    try:
        client.releases.create(
            dataset.id, utility.model_copy(update={"loss": "x.__class__"}), epsilon=1.0
        )
    except InvalidRequest as refused:
        print("hostile loss refused:", refused.errors)
    print("spent:", client.datasets.budget(dataset.id).spent.epsilon, "of 3.0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("PRIVFLOW_URL"))
    parser.add_argument("--admin-key", default=os.environ.get("PRIVFLOW_API_KEY"))
    args = parser.parse_args()
    if args.url and args.admin_key:
        with Client(args.url, api_key=args.admin_key) as client:
            run(client)
        return
    with local_service() as (url, key), Client(url, api_key=key) as client:
        run(client)


if __name__ == "__main__":
    main()
