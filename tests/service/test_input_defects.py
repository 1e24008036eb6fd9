"""Small input defects (issue "Trust hardening", item 8).

- A NUL character in a name (or any string of a JSON body, a path or a query) is 422 (404 for a
  path), never a 500, on SQLite and on PostgreSQL.
- An object that repeats a key (``{"epsilon": 1, "epsilon": 2}``) is 422 naming the key, in every
  JSON body; nothing is charged.
- ``PRIVFLOW_ADMIN_KEY`` shorter than 32 characters stops start-up with an error that names the
  setting and never shows its value.
- Python warnings (opacus' included) reach the log as JSON lines, not as raw stderr text.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.app import create_app
from service.cli import main
from service.settings import Settings
from tests.e2e.server import REPO_ROOT
from tests.service.conftest import create_analyst, create_dataset

COLUMNS = [
    {"name": "age", "type": "float", "lower": 0, "upper": 100},
    {"name": "city", "type": "category", "categories": ["a", "b"]},
]


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(
    request: pytest.FixtureRequest, make_settings: Callable[..., Settings]
) -> Iterator[TestClient]:
    """A client on an SQLite file, or on a fresh database of the session's PostgreSQL."""
    overrides = {}
    if request.param == "postgresql":
        overrides["database_url"] = request.getfixturevalue("postgres_url")
    app = create_app(make_settings(**overrides))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _problem(response: Any, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["code"] == code
    if field is not None:
        assert [e["field"] for e in problem["errors"]] == [field], problem
    return problem


def _raw(client: TestClient, path: str, text: str, headers: dict[str, str]) -> Any:
    return client.post(
        path, content=text.encode(), headers={**headers, "Content-Type": "application/json"}
    )


# ------------------------------------------------------------------------------------- NUL


def test_a_nul_character_is_422_on_both_stores(
    any_store: TestClient, admin: dict[str, str]
) -> None:
    client = any_store
    bad_key = client.post("/v1/keys", json={"name": "ops\x00x", "role": "analyst"}, headers=admin)
    problem = _problem(bad_key, 422, "invalid_request", "name")
    assert "NUL" in problem["errors"][0]["message"]

    dataset = {"name": "d", "columns": COLUMNS, "records": [[1.0, "a"]], "budget": {"epsilon": 1}}
    for field, body in (
        ("name", {**dataset, "name": "sal\x00aries"}),
        ("columns[0].name", {**dataset, "columns": [{**COLUMNS[0], "name": "a\x00"}, COLUMNS[1]]}),
        (
            "columns[1].categories[1]",
            {**dataset, "columns": [COLUMNS[0], {**COLUMNS[1], "categories": ["a", "\x00"]}]},
        ),
        ("records[0][1]", {**dataset, "records": [[1.0, "a\x00"]]}),
    ):
        _problem(
            client.post("/v1/datasets", json=body, headers=admin), 422, "invalid_request", field
        )

    # Paths and queries: no resource has a NUL in its id; a query holding one is refused.
    for path in ("/v1/datasets/ds_%00x", "/v1/keys/%00", "/v1/jobs/job%00", "/v1/releases/%00"):
        _problem(client.get(path, headers=admin), 404, "not_found")
    _problem(
        client.get("/v1/datasets?cursor=a%00b", headers=admin), 422, "invalid_request", "query"
    )
    assert client.delete("/v1/keys/key%00", headers=admin).status_code == 404

    # Nothing was stored, and the store still answers.
    assert client.get("/v1/datasets", headers=admin).json()["items"] == []
    names = [k["name"] for k in client.get("/v1/keys", headers=admin).json()["items"]]
    assert not any("\x00" in name for name in names)
    assert create_dataset(client, n=5)["name"] == "people"


def test_an_escaped_backslash_before_u0000_is_not_a_nul(
    client: TestClient, admin: dict[str, str]
) -> None:
    # The JSON text \\u0000 is a backslash followed by "u0000": an ordinary name.
    response = _raw(client, "/v1/keys", r'{"name": "odd \\u0000 name", "role": "analyst"}', admin)
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "odd \\u0000 name"


# ------------------------------------------------------------------------- duplicate keys


def test_a_repeated_key_is_422_naming_it_and_nothing_is_charged(
    client: TestClient, admin: dict[str, str]
) -> None:
    dataset = create_dataset(client, n=40, epsilon=3.0)
    samples = f"/v1/datasets/{dataset['id']}/samples"
    utility = '{"family": "quantile", "column": "age", "q": 0.5}'
    for text, field in (
        (f'{{"utility": {utility}, "epsilon": 1, "epsilon": 2, "method": "exact"}}', "epsilon"),
        (
            '{"utility": {"family": "quantile", "column": "age", "q": 0.5, "q": 0.9},'
            ' "epsilon": 1, "method": "exact"}',
            "q",
        ),
        (f'{{"utility": {utility}, "utility": {utility}, "epsilon": 1}}', "utility"),
    ):
        problem = _problem(_raw(client, samples, text, admin), 422, "invalid_request", field)
        assert "more than once" in problem["errors"][0]["message"]
    budget = client.get(f"/v1/datasets/{dataset['id']}", headers=admin).json()["budget"]
    assert budget["spent"]["epsilon"] == 0.0
    ledger = client.get(f"/v1/datasets/{dataset['id']}/ledger", headers=admin).json()
    assert ledger["items"] == []

    # Every JSON body: keys, datasets, grants, flows.
    key_id, _ = create_analyst(client)
    for path, text, field in (
        ("/v1/keys", '{"name": "a", "name": "b", "role": "analyst"}', "name"),
        (
            "/v1/datasets",
            '{"name": "x", "columns": [], "records": [], "budget": {"epsilon": 1, "epsilon": 9}}',
            "epsilon",
        ),
        (
            f"/v1/datasets/{dataset['id']}/grants",
            f'{{"key_id": "{key_id}", "epsilon_cap": 0.1, "epsilon_cap": 5}}',
            "epsilon_cap",
        ),
        (
            "/v1/flows/mmd",
            '{"source": [[0]], "target": [[1]], "kernel": {"name": "gaussian"}, "steps": 1,'
            ' "steps": 2}',
            "steps",
        ),
    ):
        _problem(_raw(client, path, text, admin), 422, "invalid_request", field)
    # The same body without the repetition is accepted (the check is not the refusal).
    ok = _raw(client, "/v1/keys", '{"name": "a", "role": "analyst"}', admin)
    assert ok.status_code == 201, ok.text


# ------------------------------------------------------------------------------ admin key


def test_a_short_admin_key_is_refused_without_showing_it(
    make_settings: Callable[..., Settings],
) -> None:
    short = "pf_short_admin_key_0123456789ab"  # 31 characters
    assert len(short) == 31
    with pytest.raises(ValidationError, match="at least 32 characters") as raised:
        make_settings(admin_key=short)
    assert short not in str(raised.value)
    assert make_settings(admin_key=short + "c").admin_key is not None  # 32 is enough
    with pytest.raises(ValidationError):
        make_settings(admin_key="k")


def test_serve_stops_at_start_up_on_a_short_admin_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PRIVFLOW_ADMIN_KEY", "hunter2")
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: pytest.fail("server started"))
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "PRIVFLOW_ADMIN_KEY" in err and "at least 32 characters" in err
    assert "hunter2" not in err
    assert main(["create-key", "--name", "x"]) == 2  # every command reads the same settings


# -------------------------------------------------------------------------------- warnings

WARNING_SCRIPT = textwrap.dedent(
    """
    import logging.config, warnings
    from fastapi.testclient import TestClient
    from service.app import create_app
    from service.logs import logging_config
    from service.settings import Settings

    logging.config.dictConfig(logging_config("info"))  # what `privflow serve` gives uvicorn
    app = create_app(Settings(warm_on_startup=False, database_url="sqlite://"))
    with TestClient(app):
        from opacus.accountants.analysis.rdp import get_privacy_spent
        get_privacy_spent(orders=[2.0, 4.0], rdp=[0.001, 0.002], delta=1e-5)  # warns
        warnings.warn("two\\nlines", RuntimeWarning)
    """
)


def test_warnings_are_json_log_lines() -> None:
    done = subprocess.run(
        [sys.executable, "-W", "default", "-c", WARNING_SCRIPT],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON log line: {line!r}\n{done.stderr}")
    warned = [r for r in records if r["logger"] == "py.warnings"]
    assert any("Optimal order is the largest alpha" in r["message"] for r in warned), lines
    assert any("RuntimeWarning: two\nlines" in r["message"] for r in warned), lines
    assert all(r["level"] == "warning" for r in warned)
