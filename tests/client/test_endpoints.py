"""Every endpoint of API.md's keys, datasets, grants, releases, ledger and jobs sections through
the synchronous SDK, against a real ``privflow serve``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from privflow_client import (
    Client,
    Dataset,
    Forbidden,
    Job,
    KeyCreated,
    PrivflowError,
    QuantileUtility,
    Release,
    Unauthenticated,
)

from tests.client.conftest import CHEAP_SHK, COLUMNS, Server, free_port

MEDIAN = QuantileUtility(column="age", q=0.5)
MakeAnalyst = Callable[..., tuple[KeyCreated, Client]]


def test_ready_and_configuration_from_the_environment(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRIVFLOW_URL", server.url + "/")
    monkeypatch.setenv("PRIVFLOW_API_KEY", server.admin_key)
    with Client() as client:
        assert client.base_url == server.url
        assert client.ready()
        assert any(key.id == "key_admin" for key in client.keys.list())
    with Client(f"http://127.0.0.1:{free_port()}") as nowhere:
        assert not nowhere.ready()


def test_keys_are_created_listed_without_secrets_and_revoked_at_once(
    server: Server, admin: Client
) -> None:
    created = admin.keys.create("reviewer", role="analyst")
    assert created.role == "analyst" and created.key.startswith("pf_")
    assert created.key not in repr(created)  # the secret stays out of logs and tracebacks

    listed = {key.id: key for key in admin.keys.list(page_size=1)}
    assert listed[created.id].name == "reviewer"
    assert listed[created.id].revoked_at is None
    assert "key" not in listed[created.id].model_dump()

    with Client(server.url, created.key) as reviewer:
        assert list(reviewer.datasets.list()) is not None
        admin.keys.revoke(created.id)
        with pytest.raises(Unauthenticated):
            list(reviewer.datasets.list())
    revoked = next(key for key in admin.keys.list() if key.id == created.id)
    assert revoked.revoked_at is not None


def test_datasets_are_created_read_and_listed_across_pages(
    admin: Client, make_dataset: Callable[..., Dataset]
) -> None:
    made = [make_dataset(epsilon=2.0 + i, n=10 + i) for i in range(3)]
    first = made[0]
    assert first.n_records == 10
    assert [c.model_dump(exclude_none=True) for c in first.columns] == [
        {"name": "age", "type": "float", "lower": 0.0, "upper": 100.0},
        {"name": "city", "type": "category", "categories": ["a", "b", "c"]},
    ]
    assert first.neighbouring == "add_remove" and first.accountant == "pure"
    assert admin.datasets.get(first.id) == first

    budget = admin.datasets.budget(made[2].id)
    assert (budget.epsilon, budget.spent.epsilon, budget.remaining.epsilon) == (4.0, 0.0, 4.0)

    pages = list(admin.datasets.list(page_size=1).pages())
    assert len(pages) >= 3 and all(len(page.items) == 1 for page in pages)
    assert pages[-1].next_cursor is None
    ids = [dataset.id for dataset in admin.datasets.list(page_size=2)]
    assert len(ids) == len(set(ids)) == len(pages)
    assert {d.id for d in made} <= set(ids)


def test_dataset_options_and_numpy_records(admin: Client) -> None:
    ages = np.linspace(0.0, 100.0, 12).reshape(-1, 1)
    dataset = admin.datasets.create(
        "ages",
        [COLUMNS[0]],
        ages,
        epsilon=1.0,
        delta=1e-6,
        neighbouring="replace_one",
        size_bound=1000,
        accountant="union",
    )
    assert (dataset.n_records, dataset.size_bound) == (12, 1000)
    assert (dataset.neighbouring, dataset.accountant) == ("replace_one", "union")
    assert dataset.budget.delta == 1e-6


def test_grants_let_an_analyst_see_and_spend_within_its_cap(
    admin: Client, make_dataset: Callable[..., Dataset], make_analyst: MakeAnalyst
) -> None:
    dataset = make_dataset(epsilon=5.0)
    key, analyst = make_analyst()
    assert dataset.id not in {d.id for d in analyst.datasets.list()}
    with pytest.raises(Forbidden):
        analyst.datasets.get(dataset.id)

    grant = admin.datasets.grant(dataset.id, key.id, epsilon_cap=1.0)
    assert (grant.dataset_id, grant.key_id, grant.epsilon_cap) == (dataset.id, key.id, 1.0)
    assert grant.spent is not None and grant.spent.epsilon == 0.0
    seen = analyst.datasets.get(dataset.id)
    assert seen.id == dataset.id
    # The record count is for the owner: an analyst gets None and the public size bound.
    assert (seen.n_records, seen.size_bound) == (None, dataset.size_bound)
    assert dataset.n_records == admin.datasets.get(dataset.id).n_records == 50
    assert [(d.id, d.n_records) for d in analyst.datasets.list()] == [(dataset.id, None)]

    analyst.releases.create(dataset.id, MEDIAN, epsilon=0.75, method="exact")
    regrant = admin.datasets.grant(dataset.id, key.id, epsilon_cap=2.0)  # replaces the cap
    assert regrant.epsilon_cap == 2.0
    assert regrant.spent is not None and regrant.spent.epsilon == 0.75  # spending is kept


def test_an_exact_release_returns_samples_certificate_charge_and_budget(
    admin: Client, make_dataset: Callable[..., Dataset], make_analyst: MakeAnalyst
) -> None:
    dataset = make_dataset(epsilon=3.0)
    key, analyst = make_analyst(dataset.id)
    release = analyst.releases.create(
        dataset.id, {"family": "quantile", "column": "age", "q": 0.25}, epsilon=0.5,
        delta=1e-6, n_samples=2, method="exact",
    )  # fmt: skip
    assert release.dataset_id == dataset.id and release.release_id.startswith("rel_")
    samples = release.samples_array
    assert samples.shape == (2, 1) and samples.dtype == np.float64
    assert np.all((samples >= 0.0) & (samples <= 100.0))
    certificate = release.certificate
    assert certificate.scope == "exact" and certificate.n_samples == 2
    assert certificate.pure_dp is not None and certificate.pure_dp.epsilon == pytest.approx(0.5)
    assert certificate.per_sample is not None and certificate.per_sample.pure_dp is not None
    assert certificate.per_sample.pure_dp.epsilon == pytest.approx(0.25)
    assert release.charged.epsilon == 0.5 and release.sampler is None
    assert release.budget is not None and release.budget.remaining.epsilon == 2.5

    assert analyst.releases.get(release.release_id) == release
    [entry] = list(analyst.datasets.ledger(dataset.id))
    assert (entry.release_id, entry.key_id, entry.status) == (
        release.release_id,
        key.id,
        "succeeded",
    )
    assert entry.utility["q"] == 0.25 and entry.charged.epsilon == 0.5
    assert admin.datasets.budget(dataset.id).spent.epsilon == 0.5


def test_mode_releases_are_labels_in_an_object_array(
    make_dataset: Callable[..., Dataset], make_analyst: MakeAnalyst
) -> None:
    dataset = make_dataset()
    _, analyst = make_analyst(dataset.id)
    release = analyst.releases.create(
        dataset.id, {"family": "mode", "column": "city"}, epsilon=0.6, n_samples=3, method="exact"
    )
    labels = release.samples_array
    assert labels.shape == (3, 1) and labels.dtype == object
    assert set(labels.ravel()) <= {"a", "b", "c"}


def test_an_shk_job_waits_with_a_progress_bar_and_yields_its_release(
    admin: Client,
    make_dataset: Callable[..., Dataset],
    make_analyst: MakeAnalyst,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dataset = make_dataset(epsilon=2.0)
    _, analyst = make_analyst(dataset.id)
    job = analyst.releases.submit(dataset.id, MEDIAN, epsilon=0.5, sampler=CHEAP_SHK)
    assert isinstance(job, Job) and job.kind == "release"
    assert job.release_id is not None and job.status in {"queued", "running", "succeeded"}

    done = job.wait(timeout=240, progress=True, poll_interval=0.2)  # may compile the kernels
    assert done.status == "succeeded" and done.finished and done.progress == 1.0
    bar = capsys.readouterr().err
    assert "100%" in bar and "succeeded" in bar and job.id in bar
    assert done.work is not None and done.work.units > 0  # the public estimate, for the bar
    assert " est." in bar  # the bar shows the estimate

    release = done.release()
    assert isinstance(release, Release) and release.release_id == job.release_id
    assert release.work == done.work
    assert release.certificate.scope == "mean_field"
    assert release.sampler is not None and release.sampler.particles == 64
    assert 0.0 <= float(release.samples_array[0, 0]) <= 100.0
    assert admin.releases.get(job.release_id).samples == release.samples
    assert analyst.jobs.get(job.id).status == "succeeded"
    assert analyst.jobs.cancel(job.id).status == "succeeded"  # a finished job stays finished


def test_a_cancelled_job_raises_its_problem_and_keeps_the_charge(
    admin: Client, make_dataset: Callable[..., Dataset], make_analyst: MakeAnalyst
) -> None:
    """The server runs one release at a time (``PRIVFLOW_JOB_WORKERS=1``): the second job waits
    behind an SHK run, so it is still queued when the cancel arrives, whatever the timing."""
    dataset = make_dataset(epsilon=2.0)
    _, analyst = make_analyst(dataset.id)
    ahead = analyst.releases.submit(dataset.id, MEDIAN, epsilon=0.5, sampler=CHEAP_SHK)
    job = analyst.releases.submit(dataset.id, MEDIAN, epsilon=1.0, method="exact")
    assert job.cancel().status in {"queued", "cancelled"}
    with pytest.raises(PrivflowError) as raised:
        job.release(timeout=240)  # the run ahead may compile the kernels first
    assert raised.value.code == "cancelled" and raised.value.status == 409
    assert analyst.jobs.get(job.id).status == "cancelled"
    assert ahead.wait(timeout=240).status == "succeeded"
    assert admin.datasets.budget(dataset.id).spent.epsilon == 1.5  # the charge stays: fail closed
    statuses = {e.release_id: e.status for e in admin.datasets.ledger(dataset.id)}
    assert statuses == {ahead.release_id: "succeeded", job.release_id: "cancelled"}
