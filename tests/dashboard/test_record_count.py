"""The dashboard as rendered in headless Chromium never shows an analyst the record count.

A dataset with a distinctive number of records (7919) is added to the seeded server and granted
to a new analyst; the page the analyst signs in to must not carry the number anywhere in its
text or markup, while the same page shows it to the admin (the data owner).
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.dashboard.conftest import Live, Tab
from tests.dashboard.seed import ADMIN_KEY, COLUMNS, auth

N = 7919
TOKEN = re.compile(r"(?<![0-9A-Za-z_.])7919(?![0-9A-Za-z_])")  # not inside an id or a fraction


def _census(live: Live) -> tuple[str, str]:
    """A dataset of N records granted to a new analyst: (dataset id, analyst key)."""
    admin = auth(ADMIN_KEY)
    with httpx.Client(base_url=live.url, timeout=60) as http:
        key = http.post("/v1/keys", json={"name": "carol", "role": "analyst"}, headers=admin)
        assert key.status_code == 201, key.text
        body = {
            "name": "census",
            "columns": COLUMNS,
            "records": [[float((7 * i) % 101), "abc"[i % 3]] for i in range(N)],
            "budget": {"epsilon": 1.0, "delta": 1e-6},
            "size_bound": 100_000,
        }
        dataset = http.post("/v1/datasets", json=body, headers=admin)
        assert dataset.status_code == 201, dataset.text
        dataset_id = dataset.json()["id"]
        granted = http.post(
            f"/v1/datasets/{dataset_id}/grants", json={"key_id": key.json()["id"]}, headers=admin
        )
        assert granted.status_code == 201, granted.text
        release = {
            "utility": {"family": "quantile", "column": "age", "q": 0.5},
            "epsilon": 0.25,
            "method": "exact",
        }
        released = http.post(
            f"/v1/datasets/{dataset_id}/samples", json=release, headers=auth(key.json()["key"])
        )
        assert released.status_code == 201, released.text
    return dataset_id, key.json()["key"]


def _show(tab: Tab, key: str, dataset_id: str) -> None:
    tab.page.fill("#api-key", key)
    tab.page.press("#api-key", "Enter")
    tab.page.wait_for_selector("#dataset-select")
    tab.page.select_option("#dataset-select", dataset_id)
    tab.page.wait_for_selector(f'.dataset[data-dataset-id="{dataset_id}"] #composition svg.chart')


def test_the_rendered_page_hides_the_record_count_from_analysts(open_tab: Any, live: Live) -> None:
    dataset_id, analyst_key = _census(live)

    tab = open_tab()
    _show(tab, analyst_key, dataset_id)
    text = tab.page.inner_text("body")
    html = tab.page.content()
    assert not TOKEN.findall(text) and not TOKEN.findall(html), text
    assert "Size bound: 100000 records." in text
    # The certificate dialog of the analyst's release shows nothing of it either.
    tab.page.locator("#ledger button[data-release-id]").first.click()
    tab.page.wait_for_selector("#certificate-dialog[open]")
    assert not TOKEN.findall(tab.page.inner_text("#certificate-dialog"))
    assert not TOKEN.findall(tab.page.content())
    assert tab.errors == []

    owner = open_tab()
    _show(owner, ADMIN_KEY, dataset_id)
    assert f"Records: {N} (size bound 100000)." in owner.page.inner_text("#budget")
    assert owner.errors == []
