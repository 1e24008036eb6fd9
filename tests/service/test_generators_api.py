"""Generator endpoints end to end: fit on points or a release, sample, provenance, errors."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from tests.service.conftest import create_analyst, grant

FAST_FIT = {"samples": 4096, "max_steps": 400, "tolerance": 0.05}


def _ring(n: int = 120, seed: int = 0) -> np.ndarray:
    angles = np.random.default_rng(seed).uniform(0, 2 * np.pi, n)
    return 3.0 * np.c_[np.cos(angles), np.sin(angles)] + np.array([10.0, -5.0])


def _fit(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = client.post("/v1/generators", json={"fit": FAST_FIT, **body}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def test_fit_and_sample_on_points(client: TestClient, admin: dict[str, str]) -> None:
    ring = _ring()
    fitted = _fit(client, admin, points=ring.tolist(), seed=1)
    assert fitted["n_points"] == 120 and fitted["dim"] == 2
    assert fitted["provenance"] == {"kind": "points"}
    assert fitted["charged"] == {"epsilon": 0.0, "delta": 0.0}
    assert fitted["fit"]["converged"] and fitted["fit"]["max_rel_mass_error"] <= 0.05
    assert fitted["created_at"].endswith("Z")
    gid = fitted["generator_id"]
    first = client.post(f"/v1/generators/{gid}/samples", json={"n": 500, "seed": 3}, headers=admin)
    assert first.status_code == 200, first.text
    samples = np.asarray(first.json()["samples"])
    assert samples.shape == (500, 2)
    # mapped back from standardized coordinates: near the ring (radius 3 around (10, -5)),
    # inside its convex hull (soft-max barycentres of the points)
    radius = np.linalg.norm(samples - np.array([10.0, -5.0]), axis=1)
    assert radius.max() <= 3.0 + 1e-9 and np.median(radius) > 2.5
    again = client.post(f"/v1/generators/{gid}/samples", json={"n": 500, "seed": 3}, headers=admin)
    assert again.json() == first.json()
    other = client.post(f"/v1/generators/{gid}/samples", json={"n": 500, "seed": 4}, headers=admin)
    assert other.json()["samples"] != first.json()["samples"]
    listed = client.get("/v1/generators", headers=admin).json()["items"]
    assert [g["generator_id"] for g in listed] == [gid]
    assert client.get(f"/v1/generators/{gid}", headers=admin).json()["fit"] == fitted["fit"]
    assert client.delete(f"/v1/generators/{gid}", headers=admin).status_code == 204
    assert client.get(f"/v1/generators/{gid}", headers=admin).status_code == 404


def test_fit_on_a_release_charges_nothing_and_carries_its_certificate(
    client: TestClient, admin: dict[str, str]
) -> None:
    rng = np.random.default_rng(5)
    dataset = client.post(
        "/v1/datasets",
        json={
            "name": "xy",
            "columns": [
                {"name": "x", "type": "float", "lower": 0, "upper": 10},
                {"name": "y", "type": "float", "lower": 0, "upper": 10},
            ],
            "records": rng.uniform(0, 10, (80, 2)).tolist(),
            "budget": {"epsilon": 5.0},
        },
        headers=admin,
    ).json()
    key_id, analyst = create_analyst(client)
    grant(client, dataset["id"], key_id)
    release = client.post(
        f"/v1/datasets/{dataset['id']}/samples",
        json={"utility": {"family": "mean", "columns": ["x", "y"], "clip": 3.0}, "epsilon": 2.0,
              "n_samples": 12, "method": "exact"},
        headers=analyst,
    ).json()  # fmt: skip
    spent = client.get(f"/v1/datasets/{dataset['id']}", headers=admin).json()["budget"]["spent"]
    accepted = client.post(
        "/v1/generators",
        json={"release_id": release["release_id"], "fit": FAST_FIT, "async": True},
        headers=analyst,
    )
    assert accepted.status_code == 202
    job = _wait(client, accepted.json()["job_id"], analyst)
    assert job["status"] == "succeeded", job
    provenance = job["result"]["provenance"]
    assert provenance["kind"] == "release" and provenance["release_id"] == release["release_id"]
    assert provenance["certificate"] == release["certificate"]
    assert job["result"]["n_points"] == 12 and job["result"]["dim"] == 2
    after = client.get(f"/v1/datasets/{dataset['id']}", headers=admin).json()["budget"]["spent"]
    assert after == spent  # post-processing: no charge
    _, stranger = create_analyst(client, "stranger")
    hidden = client.post(
        "/v1/generators", json={"release_id": release["release_id"]}, headers=stranger
    )
    assert hidden.status_code == 404  # another analyst's release is not readable
    gid = job["result"]["generator_id"]
    assert client.get(f"/v1/generators/{gid}", headers=stranger).status_code == 404


def _wait(client: TestClient, job_id: str, headers: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError("job did not finish")


def test_generator_requests_are_validated(client: TestClient, admin: dict[str, str]) -> None:
    ring = _ring(20).tolist()
    cases = [
        ({"points": ring, "dataset_id": "ds_1"}, "dataset_id"),
        ({}, "points"),
        ({"points": ring, "release_id": "rel_1"}, "points"),
        ({"points": ring, "weights": [1.0]}, "weights"),
        ({"points": ring, "epsilon": -1.0}, "epsilon"),
        ({"points": ring, "source": "cauchy"}, "source"),
        ({"points": ring, "fit": {"samples": 10}}, "fit.samples"),
    ]
    for body, field in cases:
        response = client.post("/v1/generators", json=body, headers=admin)
        assert response.status_code == 422, (body, response.text)
        assert field in [e["field"] for e in response.json()["errors"]], (body, response.json())
    missing = client.post("/v1/generators", json={"release_id": "rel_nope"}, headers=admin)
    assert missing.status_code == 404
    gid = _fit(client, admin, points=ring)["generator_id"]
    bad = client.post(f"/v1/generators/{gid}/samples", json={"n": 0, "seed": 1}, headers=admin)
    assert bad.status_code == 422


def test_a_fit_cut_short_by_max_steps_is_stored_with_nothing_unmeasured_invented(
    client: TestClient, admin: dict[str, str]
) -> None:
    """A budget of one energy evaluation ends before the target ε (the continuation's first
    level takes it): 201 with ``converged`` false and the unmeasured energy and error as null
    (they were inf and NaN, which JSON cannot carry: a 500 after the work was done); the
    generator still samples."""
    fitted = _fit(
        client, admin, points=_ring().tolist(), fit={"samples": 4096, "max_steps": 1}, seed=1
    )
    report = fitted["fit"]
    assert report["steps"] == 1 and report["converged"] is False
    assert report["energy"] is None and report["max_rel_mass_error"] is None
    assert [level[1] for level in report["levels"]] == [1]
    gid = fitted["generator_id"]
    assert client.get(f"/v1/generators/{gid}", headers=admin).json()["fit"] == report
    samples = client.post(f"/v1/generators/{gid}/samples", json={"n": 10, "seed": 0}, headers=admin)
    assert samples.status_code == 200 and np.isfinite(samples.json()["samples"]).all()
