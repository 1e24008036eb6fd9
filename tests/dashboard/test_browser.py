"""The dashboard in headless Chromium against a real seeded ``privflow serve``.

Each test opens a fresh browser context (its own sessionStorage), signs in through the form and
checks the page against the API answers for the same key: the numbers, what an analyst may
see, keyboard operation, the phone layout, contrast, and that nothing lands in the console.
Set ``PRIVFLOW_DASHBOARD_SCREENSHOTS=docs`` to write the screenshots that docs/dashboard.md shows.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dashboard.conftest import Live, Tab
from tests.dashboard.seed import ADMIN_KEY, auth

ROWS_JS = """rows => rows.map(r => ({
  release: r.dataset.releaseId,
  key: r.dataset.keyId,
  charged: r.querySelector('[data-field="entry.charged.epsilon"]').dataset.value,
  scope: r.querySelector('.scope').textContent,
  bound: r.querySelector('.bound').textContent,
  status: r.querySelector('.badge').textContent,
}))"""

GRANTS_JS = """rows => rows.map(r => ({
  key: r.dataset.keyId,
  spent: r.querySelector('[data-field="grant.spent.epsilon"]').dataset.value,
  cap: r.querySelector('[data-field="grant.epsilon_cap"]').dataset.value,
  state: r.querySelector('.badge').dataset.state,
}))"""

# WCAG 2.x contrast of every visible text node against the background it is painted on.
CONTRAST_JS = """() => {
  const parse = (c) => {
    const m = /rgba?\\(([^)]+)\\)/.exec(c || "");
    if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  };
  const lum = (c) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
  };
  const background = (el) => {
    const layers = [];
    for (let n = el; n; n = n.parentElement) {
      const c = parse(getComputedStyle(n).backgroundColor);
      if (c && c.a > 0) { layers.push(c); if (c.a >= 1) break; }
    }
    let out = { r: 255, g: 255, b: 255 };
    for (const c of layers.reverse()) {
      out = { r: c.r * c.a + out.r * (1 - c.a), g: c.g * c.a + out.g * (1 - c.a),
              b: c.b * c.a + out.b * (1 - c.a) };
    }
    return out;
  };
  const failures = [];
  let checked = 0;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const el = node.parentElement;
    if (!node.textContent.trim() || !el) continue;
    if (el.closest("[hidden], .visually-hidden, title, desc")) continue;
    const rect = el.getBoundingClientRect();
    if (rect.width < 2 || rect.height < 2 || !el.checkVisibility()) continue;
    const style = getComputedStyle(el);
    const fg = parse(el.closest("svg") ? style.fill : style.color);
    if (!fg) continue;
    const l1 = lum(fg), l2 = lum(background(el));
    const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    const size = parseFloat(style.fontSize), bold = Number(style.fontWeight) >= 700;
    const large = size >= 24 || (bold && size >= 18.66);
    checked += 1;
    if (ratio < (large ? 3 : 4.5)) failures.push([node.textContent.trim().slice(0, 40), ratio]);
  }
  return { checked, failures };
}"""


def _loaded(tab: Tab, dataset_id: str | None = None) -> None:
    """Wait until a dataset's view, its composition included, is on the page."""
    scope = f'.dataset[data-dataset-id="{dataset_id}"]' if dataset_id else ".dataset"
    tab.page.wait_for_selector(f"{scope} #composition svg.chart")


def _sign_in(tab: Tab, key: str) -> None:
    tab.page.fill("#api-key", key)
    tab.page.press("#api-key", "Enter")
    _loaded(tab)


def _api(live: Live, key: str, path: str) -> Any:
    response = httpx.get(f"{live.url}{path}", headers=auth(key), timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    return body["items"] if isinstance(body, dict) and "items" in body else body


def _number(tab: Tab, selector: str) -> float | None:
    """The exact value behind a displayed number; its text must show it to 6 digits."""
    element = tab.page.locator(selector)
    raw = element.get_attribute("data-value")
    assert raw is not None, selector
    if raw == "null":
        return None
    value = float(raw)
    assert float(element.inner_text()) == pytest.approx(value, rel=1e-5), selector
    return value


def _tab_to(tab: Tab, selector: str, limit: int = 120) -> None:
    for _ in range(limit):
        tab.page.keyboard.press("Tab")
        if tab.page.evaluate("s => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"Tab never reached {selector}")


def _screenshot(tab: Tab, name: str, *, full_page: bool = True) -> None:
    folder = os.environ.get("PRIVFLOW_DASHBOARD_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        tab.page.screenshot(path=str(Path(folder) / f"dashboard-{name}.png"), full_page=full_page)


def _only_this_origin(tab: Tab, live: Live) -> None:
    assert tab.requests and all(url.startswith(f"{live.url}/") for url in tab.requests)


def test_admin_page_shows_the_api_numbers(open_tab: Any, live: Live) -> None:
    tab = open_tab()
    _sign_in(tab, ADMIN_KEY)
    dataset_id = live.seeded.datasets["salaries"]
    assert tab.page.get_attribute(".dataset", "data-dataset-id") == dataset_id
    base = f"/v1/datasets/{dataset_id}"
    budget = _api(live, ADMIN_KEY, base)["budget"]
    ledger = _api(live, ADMIN_KEY, f"{base}/ledger")
    grants = _api(live, ADMIN_KEY, f"{base}/grants")
    composition = _api(live, ADMIN_KEY, f"{base}/composition")

    fields = {
        "budget.epsilon": budget["epsilon"],
        "budget.spent.epsilon": budget["spent"]["epsilon"],
        "budget.remaining.epsilon": budget["remaining"]["epsilon"],
        "budget.delta": budget["delta"],
        "budget.spent.delta": budget["spent"]["delta"],
        "budget.remaining.delta": budget["remaining"]["delta"],
    }
    for field, value in fields.items():
        assert _number(tab, f'#budget [data-field="{field}"]') == value, field
    assert tab.page.get_attribute("#budget .alert", "data-state") == "near"  # 86 % spent

    rows = tab.page.locator("#ledger tbody tr").evaluate_all(ROWS_JS)
    assert [r["release"] for r in rows] == [e["release_id"] for e in ledger]
    assert len(ledger) == 5
    for row, entry in zip(rows, ledger, strict=True):
        assert row["key"] == entry["key_id"]
        assert float(row["charged"]) == entry["charged"]["epsilon"]
        assert row["scope"] == entry["certificate"]["scope"]
        assert row["bound"] == entry["certificate"]["bound"]
        assert row["status"] == entry["status"]
    total = sum(e["charged"]["epsilon"] for e in ledger)
    assert _number(tab, '[data-field="spend.total"]') == pytest.approx(total, rel=1e-12)

    shown = tab.page.locator("#analysts tbody tr").evaluate_all(GRANTS_JS)
    assert [g["key"] for g in shown] == [g["key_id"] for g in grants]
    for row, grant in zip(shown, grants, strict=True):
        assert float(row["spent"]) == grant["spent"]["epsilon"]
        assert float(row["cap"]) == grant["epsilon_cap"]
    assert [g["state"] for g in shown] == ["ok", "near"]  # alice 50 % of her cap, bob 85 %

    charged = composition["charged"]
    assert (
        _number(tab, '[data-field="composition.charged.pure_epsilon"]') == charged["pure_epsilon"]
    )
    assert _number(tab, '[data-field="composition.charged.zcdp_rho"]') == charged["zcdp_rho"]
    curves = zip(composition["pure"], composition["zcdp"], strict=True)
    at_budget = {d: (p, z) for (d, p), (_, z) in curves}
    pure, zcdp = at_budget[budget["delta"]]
    assert _number(tab, '[data-field="composition.pure.at_budget"]') == pure
    assert _number(tab, '[data-field="composition.zcdp.at_budget"]') == zcdp
    assert tab.page.locator("#composition svg.chart .series-zcdp circle").count() == len(
        composition["zcdp"]
    )
    _screenshot(tab, "desktop")
    _only_this_origin(tab, live)
    assert tab.errors == []


def test_an_analyst_sees_only_its_own_entries(open_tab: Any, live: Live) -> None:
    seeded = live.seeded
    bob = seeded.keys["bob"]
    tab = open_tab()
    _sign_in(tab, bob["key"])
    options = tab.page.locator("#dataset-select option").evaluate_all("o => o.map(x => x.value)")
    assert options == [seeded.datasets["salaries"]]  # bob holds no grant on "visits"
    ledger = _api(live, bob["key"], f"/v1/datasets/{seeded.datasets['salaries']}/ledger")
    rows = tab.page.locator("#ledger tbody tr").evaluate_all(ROWS_JS)
    assert (
        [r["release"] for r in rows] == [e["release_id"] for e in ledger] == seeded.releases["bob"]
    )
    assert {r["key"] for r in rows} == {bob["id"]}
    shown = tab.page.locator("#analysts tbody tr").evaluate_all(GRANTS_JS)
    assert [(g["key"], g["state"]) for g in shown] == [(bob["id"], "near")]

    html = tab.page.content()
    others = [seeded.keys["alice"]["id"], *seeded.releases["alice"], *seeded.releases["admin"]]
    assert not [text for text in [*others, "alice", "bootstrap admin"] if text in html]
    assert not [url for url in tab.requests if url.endswith("/v1/keys") or "/v1/keys?" in url]
    _only_this_origin(tab, live)
    assert tab.errors == []


def test_an_exhausted_budget_is_an_alert(open_tab: Any, live: Live) -> None:
    seeded = live.seeded
    tab = open_tab()
    _sign_in(tab, seeded.keys["alice"]["key"])
    visits = seeded.datasets["visits"]
    tab.page.select_option("#dataset-select", visits)
    _loaded(tab, visits)
    alert = tab.page.locator("#budget .alert")
    assert alert.get_attribute("data-state") == "exhausted"
    assert alert.get_attribute("role") == "alert"
    assert "exhausted" in alert.inner_text().lower()
    assert _number(tab, '#budget [data-field="budget.remaining.epsilon"]') == 0.0
    shown = tab.page.locator("#analysts tbody tr").evaluate_all(GRANTS_JS)
    assert [(g["key"], g["cap"]) for g in shown] == [(seeded.keys["alice"]["id"], "null")]
    assert tab.errors == []


def test_sign_in_and_certificate_work_from_the_keyboard(open_tab: Any, live: Live) -> None:
    tab = open_tab()
    page = tab.page
    _tab_to(tab, "#api-key")
    page.keyboard.type(ADMIN_KEY)
    page.keyboard.press("Enter")
    _loaded(tab)

    _tab_to(tab, "#ledger button[data-release-id]")
    outline = page.evaluate(
        "() => { const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, parseFloat(s.outlineWidth)]; }"
    )
    assert outline[0] != "none" and outline[1] >= 2  # a visible focus indicator
    release_id = page.evaluate("document.activeElement.dataset.releaseId")
    page.keyboard.press("Enter")
    page.wait_for_selector("#certificate-dialog[open]")
    assert page.evaluate("document.activeElement.id") == "certificate-close"

    entry = next(
        e
        for e in _api(live, ADMIN_KEY, f"/v1/datasets/{live.seeded.datasets['salaries']}/ledger")
        if e["release_id"] == release_id
    )
    cert = entry["certificate"]
    dialog = "#certificate-dialog"
    assert page.inner_text(f'{dialog} [data-field="scope"]') == cert["scope"]
    assert page.inner_text(f'{dialog} [data-field="bound"]') == cert["bound"]
    assert _number(tab, f'{dialog} [data-field="pure_dp.epsilon"]') == cert["pure_dp"]["epsilon"]
    assert _number(tab, f'{dialog} [data-field="approx_dp.delta"]') == cert["approx_dp"]["delta"]
    assert _number(tab, f'{dialog} [data-field="zcdp.rho"]') == cert["zcdp"]["rho"]
    circles = page.locator(f"{dialog} svg.chart .series-renyi circle").count()
    assert circles == len(cert["renyi"])
    items = page.locator(f"{dialog} .assumptions li").all_inner_texts()
    assert items == cert["assumptions"]
    _screenshot(tab, "certificate", full_page=False)

    page.keyboard.press("Escape")
    assert page.evaluate("!document.getElementById('certificate-dialog').open")
    assert page.evaluate("document.activeElement.dataset.releaseId") == release_id
    assert tab.errors == []


def test_phone_width_has_no_horizontal_overflow(open_tab: Any, live: Live) -> None:
    tab = open_tab(width=375, height=812)
    page = tab.page
    width_js = "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    assert page.evaluate(width_js) == [375, 375]  # the sign-in form
    _sign_in(tab, ADMIN_KEY)
    assert page.evaluate(width_js) == [375, 375]
    # Every box ends inside the viewport, except inside clipping boxes: an <svg> (which clips
    # to its own box, checked itself) and the visually hidden header row of a card table.
    wide = page.evaluate(
        "() => [...document.querySelectorAll('main *')]"
        ".filter(e => !e.closest('svg *, table.cards thead'))"
        ".filter(e => e.getBoundingClientRect().right > innerWidth + 0.5)"
        ".map(e => [e.tagName, e.getAttribute('class'), e.textContent.slice(0, 30)])"
    )
    assert wide == []
    _screenshot(tab, "phone")
    page.locator("#ledger button[data-release-id]").first.click()
    page.wait_for_selector("#certificate-dialog[open]")
    box = page.locator("#certificate-dialog").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375
    assert page.evaluate(width_js) == [375, 375]
    assert tab.errors == []


def test_text_meets_wcag_aa_contrast(open_tab: Any, live: Live) -> None:
    tab = open_tab()
    result = tab.page.evaluate(CONTRAST_JS)
    assert result["checked"] > 5 and result["failures"] == []  # the sign-in form
    _sign_in(tab, ADMIN_KEY)
    result = tab.page.evaluate(CONTRAST_JS)
    assert result["checked"] > 100 and result["failures"] == []
    tab.page.locator("#ledger button[data-release-id]").first.click()
    tab.page.wait_for_selector("#certificate-dialog[open]")
    dialog = tab.page.evaluate(
        CONTRAST_JS.replace("document.body", "document.getElementById('certificate-dialog')")
    )
    assert dialog["checked"] > 20 and dialog["failures"] == []
    assert tab.errors == []


def test_the_key_lives_in_this_tab_only(open_tab: Any, live: Live) -> None:
    tab = open_tab()
    page = tab.page
    page.fill("#api-key", "pf_not_a_key")
    page.press("#api-key", "Enter")
    page.wait_for_selector("#sign-in-error:not([hidden])")
    assert "not active" in page.inner_text("#sign-in-error")
    assert page.evaluate("sessionStorage.length") == 0
    # The browser reports the refused request itself; nothing else may reach the console.
    assert [e for e in tab.errors if "status of 401" not in e] == []
    tab.errors.clear()

    _sign_in(tab, ADMIN_KEY)
    storage = page.evaluate("[sessionStorage.getItem('privflow.apiKey'), localStorage.length]")
    assert storage == [ADMIN_KEY, 0]
    assert page.context.cookies() == []
    page.reload()
    _loaded(tab)  # restored from this tab's session
    other = page.context.new_page()  # same browser, another tab: not signed in
    other.goto(f"{live.url}/dashboard")
    assert other.is_visible("#sign-in") and not other.is_visible("#app")
    other.close()

    page.click("#sign-out")
    assert page.is_visible("#sign-in") and not page.is_visible("#app")
    assert page.evaluate("sessionStorage.length") == 0
    assert page.locator("#dataset *").count() == 0
    assert tab.errors == []


# --- issue 18's small things: one-entry chart, sign-in hint, certificate layout, rounding ------

# The points of an SVG path written with M, L, H and V commands (absolute coordinates).
PATH_POINTS_JS = """d => {
  const points = [];
  let x = 0, y = 0;
  for (const [, cmd, args] of d.matchAll(/([MLHV])([^MLHV]*)/g)) {
    const v = args.split(/[ ,]+/).filter(Boolean).map(Number);
    if (cmd === "M" || cmd === "L") { x = v[0]; y = v[1]; }
    else if (cmd === "H") x = v[0];
    else y = v[0];
    points.push([x, y]);
  }
  return points;
}"""


def _analyst_on_a_new_dataset(live: Live, name: str, dataset_name: str) -> tuple[str, str]:
    """A new analyst key granted a new 50-record ``age`` dataset: (key, dataset id)."""
    admin = auth(ADMIN_KEY)
    with httpx.Client(base_url=live.url, timeout=60) as http:
        key = http.post("/v1/keys", json={"name": name, "role": "analyst"}, headers=admin)
        dataset = http.post(
            "/v1/datasets",
            json={
                "name": dataset_name,
                "columns": [{"name": "age", "type": "float", "lower": 0, "upper": 100}],
                "records": [[float(i % 100)] for i in range(50)],
                "budget": {"epsilon": 2.0, "delta": 1e-6},
            },
            headers=admin,
        )
        dataset_id = dataset.json()["id"]
        grant = http.post(
            f"/v1/datasets/{dataset_id}/grants", json={"key_id": key.json()["id"]}, headers=admin
        )
        assert grant.status_code == 201, grant.text
    return key.json()["key"], dataset_id


def _one_release_analyst(live: Live) -> tuple[str, str, str]:
    """A new analyst with exactly one release on a new dataset: (key, dataset id, release id).

    The release is 0.7 split over 7 samples, so its per-sample ε is 0.09999999999999999 in
    the API (float division), the value the page must not print as is.
    """
    key, dataset_id = _analyst_on_a_new_dataset(live, "carol", "one-entry")
    with httpx.Client(base_url=live.url, timeout=60) as http:
        release = http.post(
            f"/v1/datasets/{dataset_id}/samples",
            json={
                "utility": {"family": "quantile", "column": "age", "q": 0.5},
                "epsilon": 0.7,
                "delta": 1e-6,
                "n_samples": 7,
                "method": "exact",
            },
            headers=auth(key),
        )
        assert release.status_code == 201, release.text
    per_sample = release.json()["certificate"]["per_sample"]["pure_dp"]["epsilon"]
    assert repr(per_sample) == "0.09999999999999999"  # the float noise this test is about
    return key, dataset_id, release.json()["release_id"]


def test_the_sign_in_hint_does_not_promise_a_pf_prefix(open_tab: Any, live: Live) -> None:
    hint = open_tab().page.inner_text("#api-key-hint")
    assert "first admin key" in hint and "PRIVFLOW_ADMIN_KEY" in hint
    assert "may look different" in hint


def test_one_charge_draws_a_step_and_the_certificate_reads_well(open_tab: Any, live: Live) -> None:
    key, dataset_id, release_id = _one_release_analyst(live)
    for width in (1280, 375):
        tab = open_tab(width=width, height=900)
        page = tab.page
        _sign_in(tab, key)
        assert page.get_attribute(".dataset", "data-dataset-id") == dataset_id

        # The spend chart of a single charge: a flat run at 0, the step, a flat run at the
        # total; not one vertical tick.
        page.wait_for_selector("#spend svg.chart .series-spend path", state="attached")
        d = page.get_attribute("#spend svg.chart .series-spend path", "d")
        points = page.evaluate(PATH_POINTS_JS, d)
        xs = sorted({round(x, 1) for x, _ in points})
        ys = sorted({round(y, 1) for _, y in points})
        assert len(points) >= 4 and len(xs) >= 3 and len(ys) == 2, d
        zero_y = float(page.get_attribute("#spend svg.chart line.axis", "y1") or "nan")
        assert points[0][1] == pytest.approx(zero_y, abs=0.1)  # it starts on the zero line
        plot_width = float(page.get_attribute("#spend svg.chart", "width") or "0")
        assert xs[-1] - xs[0] > 0.5 * plot_width

        # The certificate dialog: every label and its value on one line.
        page.locator(f'#ledger button[data-release-id="{release_id}"]').click()
        page.wait_for_selector("#certificate-dialog[open]")
        pairs = page.evaluate(
            "() => [...document.querySelectorAll('#certificate-dialog .facts > div')].map(d => {"
            " const t = d.querySelector('dt').getBoundingClientRect();"
            " const v = d.querySelector('dd').getBoundingClientRect();"
            " return [d.querySelector('dt').textContent, t.top, t.bottom, v.top, v.left, t.right];"
            "})"
        )
        labels = [p[0] for p in pairs]
        assert "Release" in labels
        for label, label_top, label_bottom, value_top, value_left, label_right in pairs:
            assert value_top < label_bottom and value_top >= label_top - 4, (width, label)
            assert value_left >= label_right, (width, label)

        # Numbers a person reads are rounded; the exact API value stays in data-value.
        per_sample = '#certificate-dialog [data-field="per_sample.pure_dp.epsilon"]'
        assert page.get_attribute(per_sample, "data-value") == "0.09999999999999999"
        assert page.inner_text(per_sample) == "0.1"
        raw = page.text_content("#certificate-dialog pre.raw") or ""
        assert "0.09999999999999999" not in raw and '"epsilon": 0.1' in raw
        assert tab.errors == []


CUSTOM_LOSS = "0.5 * (theta[0] - x)**2"


def test_a_custom_utility_shows_its_expression_and_clip(open_tab: Any, live: Live) -> None:
    """Issue 19: the ledger row and the certificate dialog of a custom-utility release show the
    analyst's expression, its clip and its form (the sensitivity follows from the clip)."""
    key, dataset_id = _analyst_on_a_new_dataset(live, "dora", "custom-entry")
    with httpx.Client(base_url=live.url, timeout=120) as http:
        utility = {
            "family": "custom",
            "loss": CUSTOM_LOSS,
            "columns": {"x": "age"},
            "domain": {"box": [[0, 100]]},
            "clip": 7.5,
        }
        release = http.post(
            f"/v1/datasets/{dataset_id}/samples",
            json={"utility": utility, "epsilon": 0.5, "method": "exact"},
            headers=auth(key),
        )
        assert release.status_code == 201, release.text
    release_id = release.json()["release_id"]
    tab = open_tab(width=1280, height=900)
    page = tab.page
    _sign_in(tab, key)
    page.wait_for_selector(f'#ledger button[data-release-id="{release_id}"]')
    row = page.locator("#ledger tbody tr", has=page.locator(f'[data-release-id="{release_id}"]'))
    text = row.inner_text()
    assert CUSTOM_LOSS in text and "clip=7.5" in text and "gradient_norm" in text, text
    page.locator(f'#ledger button[data-release-id="{release_id}"]').click()
    page.wait_for_selector("#certificate-dialog[open]")
    dialog = "#certificate-dialog"
    assert page.inner_text(f'{dialog} [data-field="utility.loss"]') == CUSTOM_LOSS
    assert page.inner_text(f'{dialog} [data-field="utility.clip"]') == "7.5"
    assert page.inner_text(f'{dialog} [data-field="utility.form"]') == "gradient_norm"
    assert tab.errors == []
