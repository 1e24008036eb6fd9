// One dataset's audit view: budget and alert, spend over time, analysts against their caps,
// the composition curve against the budget, and the ledger.
//
// Everything shown comes from the API answers for the signed-in key: an analyst's ledger and
// grants hold only its own entries, so this view cannot show another analyst's releases.

import { bar, plot } from "./charts.js";
import { fmt, h, num, pct, sr, time } from "./dom.js";

export const NEAR = 0.8;
const EXHAUSTED_RTOL = 1e-12;
const SPEND_MARGIN_MS = 60_000;

/** "ok", "near" (>= 80 % used) or "exhausted" (nothing left) for a used fraction. */
export function alertState(fraction) {
  if (!Number.isFinite(fraction) || fraction >= 1 - EXHAUSTED_RTOL) return "exhausted";
  return fraction >= NEAR ? "near" : "ok";
}

const ACCOUNTANTS = {
  pure: "pure: basic composition of pure ε (note (23))",
  union: "union: pure or zCDP filter at the budget's δ (note (27))",
};

function section(id, title, ...children) {
  return h(
    "section",
    { class: "panel", id, "aria-labelledby": `${id}-title` },
    h("h3", { id: `${id}-title` }, title),
    ...children,
  );
}

function stat(label, value, field) {
  return h("div", { class: "stat" }, h("dt", {}, label), h("dd", {}, num(value, field)));
}

function budgetSection(dataset) {
  const b = dataset.budget;
  const used = b.epsilon > 0 ? b.spent.epsilon / b.epsilon : Infinity;
  const state = b.remaining.epsilon <= b.epsilon * EXHAUSTED_RTOL ? "exhausted" : alertState(used);
  const message = {
    ok: `Within budget: ${pct(used)} of ε spent.`,
    near: `Near exhaustion: ${pct(used)} of ε spent (alert from ${pct(NEAR)}).`,
    exhausted: "Budget exhausted: no further release can be admitted.",
  }[state];
  return section(
    "budget",
    "Budget",
    h(
      "p",
      { class: `alert alert-${state}`, role: state === "ok" ? "status" : "alert", "data-state": state },
      h("strong", {}, { ok: "OK", near: "Warning", exhausted: "Exhausted" }[state]),
      " ",
      message,
    ),
    bar(used, `bar-${state}`),
    h(
      "dl",
      { class: "stats" },
      stat("Total ε", b.epsilon, "budget.epsilon"),
      stat("Spent ε", b.spent.epsilon, "budget.spent.epsilon"),
      stat("Remaining ε", b.remaining.epsilon, "budget.remaining.epsilon"),
      stat("Total δ", b.delta, "budget.delta"),
      stat("Spent δ", b.spent.delta, "budget.spent.delta"),
      stat("Remaining δ", b.remaining.delta, "budget.remaining.delta"),
    ),
    h(
      "p",
      { class: "hint" },
      `Accountant ${ACCOUNTANTS[dataset.accountant] || dataset.accountant}. `,
      `Neighbouring: ${dataset.neighbouring}. `,
      // The API gives n_records to admin keys only (an analyst sees the public size bound).
      dataset.n_records == null
        ? `Size bound: ${dataset.size_bound} records.`
        : `Records: ${dataset.n_records} (size bound ${dataset.size_bound}).`,
    ),
  );
}

function spendSection(dataset, ledger, grants, me, charts) {
  const mine = me.role !== "admin";
  const title = mine ? "Your spend over time" : "Spend over time";
  if (!ledger.length) {
    return section("spend", title, h("p", {}, "No releases yet."));
  }
  const first = Date.parse(ledger[0].created_at);
  const last = Date.parse(ledger[ledger.length - 1].created_at);
  // A flat run at 0 before the first charge and after the last one (5% of the span, at least a
  // minute), so even a single charge draws as a step from 0 rather than a lone vertical tick.
  const margin = Math.max((last - first) * 0.05, SPEND_MARGIN_MS);
  const points = [[first - margin, 0]];
  let total = 0;
  for (const entry of ledger) {
    total += entry.charged.epsilon;
    points.push([Date.parse(entry.created_at), total]);
  }
  const own = grants.find((g) => g.key_id === me.id);
  const limit = mine && own && own.epsilon_cap !== null ? own.epsilon_cap : dataset.budget.epsilon;
  const limitName = mine && own && own.epsilon_cap !== null ? "your cap" : "budget ε";
  const end = last + margin;
  const box = h("div", { class: "chart-box" });
  const firstAt = ledger[0].created_at;
  const lastAt = ledger[ledger.length - 1].created_at;
  charts.push({
    box,
    draw: (width) =>
      plot({
        width,
        title: `${title}: cumulative charged ε`,
        desc: `Cumulative charged ε over ${ledger.length} releases from ${firstAt} to ${lastAt}, reaching ${fmt(total)} against ${limitName} ${fmt(limit)}.`,
        xKind: "time",
        xLabel: "time (UTC)",
        yLabel: "cumulative ε",
        series: [
          { name: "charged ε", cls: "series-spend", points, step: true, extendTo: end },
        ],
        hrefs: [
          { y: limit, label: `${limitName} ${fmt(limit)}`, cls: "ref-budget", side: "start" },
          { y: limit * NEAR, label: "80% alert", cls: "ref-warn", side: "start" },
        ],
      }),
  });
  return section(
    "spend",
    title,
    h("figure", { class: "chart-figure" }, box, h("figcaption", {}, "Cumulative ε charged by ", mine ? "your" : "all", " releases, a step at each charge. Total: ", num(total, "spend.total"), ".")),
  );
}

function analystCell(keyId, names) {
  const name = names.get(keyId);
  return [name ? h("span", { class: "name" }, name) : null, h("code", { class: "key-id" }, keyId)];
}

function analystsSection(dataset, grants, me, names) {
  const mine = me.role !== "admin";
  const title = mine ? "Your grant" : "Analysts";
  if (!grants.length) {
    return section("analysts", title, h("p", {}, mine ? "This key holds no grant on the dataset." : "No analyst holds a grant on this dataset."));
  }
  const rows = grants.map((g) => {
    const cap = g.epsilon_cap;
    const used = cap === null ? g.spent.epsilon / dataset.budget.epsilon : cap > 0 ? g.spent.epsilon / cap : Infinity;
    const state = cap === null ? "ok" : alertState(used);
    const stateText = { ok: cap === null ? "no cap" : "OK", near: "Near cap", exhausted: "At cap" }[state];
    return h(
      "tr",
      { role: "row", "data-key-id": g.key_id },
      h("td", { role: "cell", "data-label": "Analyst" }, analystCell(g.key_id, names)),
      h("td", { role: "cell", "data-label": "Spent ε" }, num(g.spent.epsilon, "grant.spent.epsilon")),
      h(
        "td",
        { role: "cell", "data-label": "Cap" },
        cap === null ? h("span", { "data-field": "grant.epsilon_cap", "data-value": "null" }, "none") : ["ε ≤ ", num(cap, "grant.epsilon_cap")],
        g.delta_cap === null ? null : [h("br"), "δ ≤ ", num(g.delta_cap, "grant.delta_cap")],
      ),
      h(
        "td",
        { role: "cell", "data-label": "Use" },
        h("span", { class: "use" }, bar(used, `bar-${state}`), h("span", {}, pct(used), cap === null ? " of budget" : " of cap")),
      ),
      h("td", { role: "cell", "data-label": "State" }, h("span", { class: `badge badge-${state}`, "data-state": state }, stateText)),
    );
  });
  return section(
    "analysts",
    title,
    h(
      "table",
      { class: "cards", role: "table" },
      h("caption", {}, mine ? "Your use of the dataset against your cap." : "Each analyst's use against its cap (releases by admin keys need no grant)."),
      h(
        "thead",
        { role: "rowgroup" },
        h("tr", { role: "row" }, ["Analyst", "Spent ε", "Cap", "Use", "State"].map((c) => h("th", { scope: "col", role: "columnheader" }, c))),
      ),
      h("tbody", { role: "rowgroup" }, rows),
    ),
  );
}

function compositionSection(composition, charts) {
  const budget = composition.budget;
  const at = (curve, delta) => {
    const point = curve.find((p) => p[0] === delta);
    return point ? point[1] : null;
  };
  const box = h("div", { class: "chart-box" });
  charts.push({
    box,
    draw: (width) =>
      plot({
        width,
        height: 260,
        title: "Composition of the ledger: ε as a function of δ",
        desc: `Pure basic composition gives ε = ${fmt(composition.charged.pure_epsilon)} at every δ; zCDP with ρ = ${fmt(composition.charged.zcdp_rho)} gives ε(δ) from ${fmt(composition.zcdp[0][1])} at δ = ${fmt(composition.zcdp[0][0])} to ${fmt(composition.zcdp[composition.zcdp.length - 1][1])} at δ = ${fmt(composition.zcdp[composition.zcdp.length - 1][0])}; budget ε = ${fmt(budget.epsilon)}, δ = ${fmt(budget.delta)}.`,
        xKind: "log10",
        xLabel: "δ (log scale)",
        yLabel: "ε",
        series: [
          { name: "pure", cls: "series-pure", points: composition.pure },
          { name: "zCDP", cls: "series-zcdp", points: composition.zcdp, dots: true },
        ],
        hrefs: [{ y: budget.epsilon, label: `budget ε ${fmt(budget.epsilon)}`, cls: "ref-budget" }],
        vrefs: budget.delta > 0 ? [{ x: budget.delta, label: `δ_B ${fmt(budget.delta)}`, cls: "ref-delta" }] : [],
        marks: budget.delta > 0 ? [{ x: budget.delta, y: budget.epsilon, label: "budget (ε, δ)", cls: "mark-budget" }] : [],
      }),
  });
  const atBudget =
    budget.delta > 0
      ? h(
          "p",
          {},
          "At the budget's δ = ",
          num(budget.delta, "composition.budget.delta"),
          ": pure ε = ",
          num(at(composition.pure, budget.delta), "composition.pure.at_budget"),
          ", zCDP ε = ",
          num(at(composition.zcdp, budget.delta), "composition.zcdp.at_budget"),
          ", against a budget of ε = ",
          num(budget.epsilon, "composition.budget.epsilon"),
          ".",
        )
      : h("p", {}, "The budget has δ = 0, so only pure composition counts against it; the zCDP curve shows what the same releases give at δ > 0.");
  const legend = h(
    "ul",
    { class: "legend" },
    h("li", {}, h("span", { class: "swatch swatch-pure", "aria-hidden": "true" }), "Pure DP, basic composition: ε = Σεᵢ = ", num(composition.charged.pure_epsilon, "composition.charged.pure_epsilon")),
    h("li", {}, h("span", { class: "swatch swatch-zcdp", "aria-hidden": "true" }), "zCDP: ρ = Σρᵢ = ", num(composition.charged.zcdp_rho, "composition.charged.zcdp_rho"), ", ε(δ) by conversion (21)"),
    h("li", {}, h("span", { class: "swatch swatch-budget", "aria-hidden": "true" }), "Budget ε = ", num(budget.epsilon, "composition.budget.epsilon.legend")),
  );
  const table = h(
    "table",
    { class: "compact" },
    h("caption", {}, "ε at each δ"),
    h("thead", {}, h("tr", {}, ["δ", "pure ε", "zCDP ε"].map((c) => h("th", { scope: "col" }, c)))),
    h(
      "tbody",
      {},
      composition.pure.map((p, i) =>
        h("tr", {}, h("td", {}, num(p[0], `composition.delta.${i}`)), h("td", {}, num(p[1], `composition.pure.${i}`)), h("td", {}, num(composition.zcdp[i][1], `composition.zcdp.${i}`))),
      ),
    ),
  );
  return section(
    "composition",
    "Composition",
    h("figure", { class: "chart-figure" }, box, h("figcaption", {}, legend)),
    atBudget,
    h(
      "p",
      { class: "hint" },
      "Curves compose the ledger's charges (every entry, whatever its status: a charge is never returned). The certificates themselves compose to pure ε = ",
      num(composition.certified.pure_epsilon, "composition.certified.pure_epsilon"),
      " and ρ = ",
      num(composition.certified.zcdp_rho, "composition.certified.zcdp_rho"),
      "; a charge is never below its certificate.",
    ),
    h("details", {}, h("summary", {}, "Values"), table),
  );
}

function utilityText(utility) {
  const { family, ...rest } = utility || {};
  if (family === "custom") {
    // A user-written loss: the expression and its clip (the sensitivity follows from the clip).
    const aliases = Object.entries(rest.columns || {}).map(([a, c]) => `${a}=${c}`);
    return `custom: ${rest.loss} (clip=${rest.clip}, form=${rest.form || "gradient_norm"}, ${aliases.join(", ")})`;
  }
  const args = Object.entries(rest)
    .filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join("+") : v}`);
  return `${family}(${args.join(", ")})`;
}

function ledgerSection(ledger, me, names, onCertificate) {
  const mine = me.role !== "admin";
  const title = mine ? "Your ledger entries" : "Ledger";
  if (!ledger.length) return section("ledger", title, h("p", {}, "No releases yet."));
  const head = ["Time", "Analyst", "Utility", "Charged", "Scope", "Bound", "Status", "Certificate"];
  const rows = ledger.map((entry) => {
    const cert = entry.certificate || {};
    const button = h(
      "button",
      { type: "button", class: "link", "aria-haspopup": "dialog", "data-release-id": entry.release_id },
      "Certificate",
      sr(` of release ${entry.release_id}`),
    );
    button.addEventListener("click", () => onCertificate(entry, button));
    return h(
      "tr",
      { role: "row", "data-release-id": entry.release_id, "data-key-id": entry.key_id },
      h("td", { role: "cell", "data-label": "Time" }, time(entry.created_at)),
      h("td", { role: "cell", "data-label": "Analyst" }, analystCell(entry.key_id, names)),
      h("td", { role: "cell", "data-label": "Utility" }, h("span", {}, utilityText(entry.utility)), h("span", { class: "method" }, ` ${entry.method}`)),
      h(
        "td",
        { role: "cell", "data-label": "Charged" },
        "ε ",
        num(entry.charged.epsilon, "entry.charged.epsilon"),
        entry.charged.delta > 0 ? [", δ ", num(entry.charged.delta, "entry.charged.delta")] : null,
      ),
      h("td", { role: "cell", "data-label": "Scope" }, h("span", { class: "scope" }, cert.scope || "—")),
      h("td", { role: "cell", "data-label": "Bound", class: "bound" }, cert.bound || "—"),
      h("td", { role: "cell", "data-label": "Status" }, h("span", { class: `badge badge-status-${entry.status}` }, entry.status)),
      h("td", { role: "cell", "data-label": "Certificate" }, button),
    );
  });
  return section(
    "ledger",
    title,
    h(
      "table",
      { class: "cards ledger", role: "table" },
      h("caption", {}, `${ledger.length} ${ledger.length === 1 ? "entry" : "entries"}, in charge order (oldest first).`),
      h("thead", { role: "rowgroup" }, h("tr", { role: "row" }, head.map((c) => h("th", { scope: "col", role: "columnheader" }, c)))),
      h("tbody", { role: "rowgroup" }, rows),
    ),
  );
}

/**
 * The view of one dataset, with the composition section still loading (its conversion may
 * take a moment on a fresh server). Returns {node, charts}; draw each chart into its box once
 * the node is in the document (charts take their container's width).
 */
export function datasetView(data, me, names, onCertificate) {
  const charts = [];
  const node = h(
    "div",
    { class: "dataset", "data-dataset-id": data.dataset.id },
    h("h2", { class: "dataset-name" }, data.dataset.name, " ", h("code", {}, data.dataset.id)),
    budgetSection(data.dataset),
    spendSection(data.dataset, data.ledger, data.grants, me, charts),
    analystsSection(data.dataset, data.grants, me, names),
    section("composition", "Composition", h("p", { class: "hint" }, "Loading the composition…")),
    ledgerSection(data.ledger, me, names, onCertificate),
  );
  return { node, charts };
}

/** The composition section for `composition`; returns {node, charts} like datasetView. */
export function compositionView(composition) {
  const charts = [];
  return { node: compositionSection(composition, charts), charts };
}

/** The composition section when the API refused or failed: the reason, in words. */
export function compositionError(message) {
  return section("composition", "Composition", h("p", { class: "error" }, message));
}
