"""The OpenAPI document describes every error answer as problem+json (API.md conventions)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

PROBLEM = "application/problem+json"


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, operations in schema["paths"].items()
        if path.startswith("/v1/")
        for method, operation in operations.items()
    ]


def test_every_documented_4xx_of_v1_is_problem_json(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    posts = [op for op in _operations(schema) if op[0] == "POST"]
    assert {path for _, path, _ in posts} >= {
        "/v1/keys",
        "/v1/datasets",
        "/v1/datasets/{dataset_id}/grants",
        "/v1/datasets/{dataset_id}/samples",
    }
    for method, path, operation in _operations(schema):
        responses = operation["responses"]
        errors = {status: r for status, r in responses.items() if status.startswith("4")}
        if method == "POST":
            # Every POST validates a body and needs a key: 401 and 422 at least.
            assert {"401", "422"} <= set(errors), (method, path, sorted(responses))
        for status, described in errors.items():
            content = described.get("content", {})
            assert list(content) == [PROBLEM], (method, path, status, content)
            ref = content[PROBLEM]["schema"].get("$ref")
            assert ref == "#/components/schemas/Problem", (method, path, status)
            assert described.get("description"), (method, path, status)
    samples = schema["paths"]["/v1/datasets/{dataset_id}/samples"]["post"]["responses"]
    assert {"401", "403", "404", "409", "422", "429"} <= set(samples)
    assert "413" in schema["paths"]["/v1/datasets"]["post"]["responses"]


def test_problem_schema_has_the_contract_fields(client: TestClient) -> None:
    components = client.get("/openapi.json").json()["components"]["schemas"]
    problem = components["Problem"]
    assert set(problem["required"]) >= {"type", "title", "status", "detail", "code"}
    assert "errors" in problem["properties"]
    # FastAPI's own validation error shape is not advertised anywhere.
    assert "HTTPValidationError" not in components
    assert "HTTPValidationError" not in client.get("/openapi.json").text
