"""The ``privflow-client`` command line end to end: CSV -> dataset -> key -> grant -> release ->
budget, its exit codes, and the installed console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from privflow_client import Client, FloatColumn, read_csv
from privflow_client._cli import main
from privflow_client._csv import UsageError

from tests.client.conftest import Server

CSV = "age, city ,income\n34,a,1200\n51.5,c,900\n42,a,3000\n29,b,10\n63,a,77\n"
MEDIAN = '{"family": "quantile", "column": "age", "q": 0.5}'
COLUMN_FLAGS = ["--float", "age:18:100", "--category", "city:a,b,c"]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, json.loads(out) if status == 0 else out, err


@pytest.fixture
def people(tmp_path: Path) -> Path:
    path = tmp_path / "people.csv"
    path.write_text(CSV)
    return path


@pytest.fixture
def as_admin(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRIVFLOW_URL", server.url)
    monkeypatch.setenv("PRIVFLOW_API_KEY", server.admin_key)


@pytest.mark.usefixtures("as_admin")
def test_csv_to_dataset_to_grant_to_release_to_budget(
    people: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, dataset, err = _run(
        capsys, "create-dataset", str(people), "--epsilon", "3", *COLUMN_FLAGS
    )
    assert status == 0 and dataset["name"] == "people" and dataset["n_records"] == 5
    assert [c["name"] for c in dataset["columns"]] == ["age", "city"]
    assert "leaving out CSV columns income" in err

    status, key, _ = _run(capsys, "create-key", "--name", "cli-analyst")
    assert status == 0 and key["role"] == "analyst" and key["key"].startswith("pf_")
    status, grant, _ = _run(capsys, "grant", dataset["id"], key["id"], "--epsilon-cap", "1")
    assert status == 0 and grant["epsilon_cap"] == 1.0

    analyst = ["--api-key", key["key"]]
    status, release, _ = _run(
        capsys, *analyst, "release", dataset["id"], "--utility", MEDIAN, "--epsilon", "0.5",
        "--method", "exact",
    )  # fmt: skip
    assert status == 0 and len(release["samples"]) == 1
    assert 18.0 <= release["samples"][0][0] <= 100.0
    assert release["certificate"]["scope"] == "exact"

    status, job_release, err = _run(
        capsys, *analyst, "release", dataset["id"], "--utility", MEDIAN, "--epsilon", "0.25",
        "--particles", "64", "--async", "--progress", "--timeout", "240",
    )  # fmt: skip
    assert status == 0 and job_release["sampler"]["particles"] == 64
    assert "100%" in err and "succeeded" in err

    status, budget, _ = _run(capsys, *analyst, "budget", dataset["id"])
    assert status == 0 and budget["dataset_id"] == dataset["id"]
    assert budget["spent"]["epsilon"] == 0.75 and budget["remaining"]["epsilon"] == 2.25

    status, out, err = _run(
        capsys, *analyst, "release", dataset["id"], "--utility", MEDIAN, "--epsilon", "0.5"
    )
    assert status == 1 and out == ""
    assert json.loads(err)["code"] == "budget_exceeded"  # over the analyst's cap of 1


@pytest.mark.usefixtures("as_admin")
def test_a_schema_file_declares_the_columns(
    people: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text(
        json.dumps({"columns": [{"name": "city", "type": "category", "categories": list("abc")}]})
    )
    status, dataset, _ = _run(
        capsys, "create-dataset", str(people), "--schema", str(schema), "--epsilon", "1",
        "--name", "cities", "--accountant", "union", "--delta", "1e-6",
    )  # fmt: skip
    assert status == 0 and (dataset["name"], dataset["accountant"]) == ("cities", "union")
    status, release, _ = _run(
        capsys, "release", dataset["id"], "--utility", '{"family": "mode", "column": "city"}',
        "--epsilon", "0.5", "--method", "exact", "--n-samples", "2",
    )  # fmt: skip
    assert status == 0 and {row[0] for row in release["samples"]} <= {"a", "b", "c"}


@pytest.mark.usefixtures("as_admin")
def test_refusals_and_bad_inputs_have_their_exit_codes(
    people: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = _run(
        capsys, "create-dataset", str(people), "--epsilon", "1", "--float", "age:18:40"
    )
    assert status == 1  # the service refuses out-of-bounds records and names them
    problem = json.loads(err[err.index("{") :])
    assert problem["code"] == "invalid_request"
    fields = [e["field"] for e in problem["errors"]]
    assert fields == ["records[1][0]", "records[2][0]", "records[4][0]"]

    broken = tmp_path / "broken.csv"
    broken.write_text("age,city\n34,a\nold,b\n")
    status, _, err = _run(capsys, "create-dataset", str(broken), "--epsilon", "1", *COLUMN_FLAGS)
    assert status == 2 and "broken.csv:3" in err and "'old' is not a number" in err

    cases = [
        ["create-dataset", str(people), "--epsilon", "1"],  # no columns declared
        ["create-dataset", str(people), "--epsilon", "1", "--float", "height:0:3"],
        ["create-dataset", str(tmp_path / "missing.csv"), "--epsilon", "1", *COLUMN_FLAGS],
        ["create-dataset", str(people), "--epsilon", "1", "--schema", str(people), *COLUMN_FLAGS],
        ["release", "ds_x", "--utility", "{not json", "--epsilon", "1"],
    ]
    for argv in cases:
        status, _, err = _run(capsys, *argv)
        assert status == 2 and err.startswith("privflow-client: "), argv
    with pytest.raises(SystemExit) as usage:
        main(["create-dataset", str(people), "--epsilon", "1", "--float", "age:18"])
    assert usage.value.code == 2


def test_read_csv_takes_declared_columns_in_order(people: Path) -> None:
    columns = [{"name": "city", "type": "category", "categories": list("abc")}]
    columns.append(FloatColumn(name="age", lower=18, upper=100).model_dump())
    assert read_csv(people, columns)[:2] == [["a", 34.0], ["c", 51.5]]
    assert read_csv(str(people), [FloatColumn(name="income", lower=0, upper=1e4)])[0] == [1200.0]
    with pytest.raises(UsageError, match="no column height"):
        read_csv(people, [{"name": "height", "type": "float"}])


def test_the_installed_console_script(server: Server, admin: Client) -> None:
    script = Path(sys.executable).with_name("privflow-client")
    dataset = admin.datasets.create("script", [{"name": "x", "type": "float", "lower": 0,
                                                "upper": 1}], [[0.5]], epsilon=2.0)  # fmt: skip
    done = subprocess.run(
        [str(script), "--url", server.url, "--api-key", server.admin_key, "budget", dataset.id],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["remaining"] == {"epsilon": 2.0, "delta": 0.0}
    usage = subprocess.run(
        [sys.executable, "-m", "privflow_client", "--help"], capture_output=True, text=True
    )
    assert usage.returncode == 0 and "create-dataset" in usage.stdout
