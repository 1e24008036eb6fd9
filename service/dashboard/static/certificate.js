// The full certificate of one ledger entry: guarantees, the Rényi curve, assumptions, raw JSON.

import { plot } from "./charts.js";
import { clear, fmt, h, num, round12 } from "./dom.js";

function row(label, value) {
  return h("div", {}, h("dt", {}, label), h("dd", {}, value));
}

function guarantees(cert, prefix) {
  const approx = cert.approx_dp || {};
  const rows = [
    row("Pure DP ε", num(cert.pure_dp ? cert.pure_dp.epsilon : null, `${prefix}pure_dp.epsilon`)),
    row("Approximate DP (ε, δ)", [
      h("span", { class: "nowrap" }, "(", num(approx.epsilon ?? null, `${prefix}approx_dp.epsilon`), ","),
      " ",
      h("span", { class: "nowrap" }, num(approx.delta ?? null, `${prefix}approx_dp.delta`), ")"),
    ]),
    row("zCDP ρ", num(cert.zcdp ? cert.zcdp.rho : null, `${prefix}zcdp.rho`)),
  ];
  if (cert.kl !== undefined) rows.push(row("KL divergence", num(cert.kl, `${prefix}kl`)));
  if (cert.bounded_range) {
    rows.push(row("Bounded range β", num(cert.bounded_range.beta, `${prefix}bounded_range.beta`)));
  }
  return h("dl", { class: "facts" }, rows);
}

function renyiFigure(renyi, width) {
  const points = renyi.map((r) => [r.alpha, r.epsilon]);
  const figure = h("figure", { class: "chart-figure" });
  figure.append(
    plot({
      width,
      height: 200,
      title: "Rényi curve of the release",
      desc: `Rényi divergence bound ε(α) at ${points.length} orders, from ${fmt(points[0][1])} at α = ${fmt(points[0][0])} to ${fmt(points[points.length - 1][1])} at α = ${fmt(points[points.length - 1][0])}.`,
      xKind: "log2",
      xLabel: "order α (log scale)",
      yLabel: "ε(α)",
      series: [{ name: "Rényi", cls: "series-renyi", points, dots: true }],
    }),
    h("figcaption", {}, "Rényi DP: the release is (α, ε(α))-RDP at each order α."),
  );
  const table = h(
    "table",
    { class: "compact" },
    h("caption", { class: "visually-hidden" }, "Rényi curve values"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "α"), h("th", { scope: "col" }, "ε(α)"))),
    h(
      "tbody",
      {},
      renyi.map((r, i) =>
        h("tr", {}, h("td", {}, num(r.alpha, `renyi.${i}.alpha`)), h("td", {}, num(r.epsilon, `renyi.${i}.epsilon`))),
      ),
    ),
  );
  return [figure, h("details", {}, h("summary", {}, "Rényi values"), table)];
}

/** A custom utility's expression and clip (the ledger keeps the request's utility). */
function customUtilityRows(utility) {
  if (!utility || utility.family !== "custom") return [];
  return [
    row("Loss", h("code", { "data-field": "utility.loss" }, utility.loss)),
    row("Clip", h("span", { "data-field": "utility.clip" }, String(utility.clip))),
    row("Utility form", h("span", { "data-field": "utility.form" }, utility.form || "gradient_norm")),
  ];
}

/** Fill the dialog body with the certificate of `entry`. */
export function renderCertificate(container, entry, width) {
  const cert = entry.certificate || {};
  clear(container);
  const description = [
    row("Release", h("code", {}, entry.release_id)),
    ...customUtilityRows(entry.utility),
    row("Scope", h("span", { "data-field": "scope" }, cert.scope)),
    row("Bound", h("span", { "data-field": "bound" }, cert.bound)),
    row("Samples", num(cert.n_samples ?? null, "n_samples")),
    row("Inverse temperature λ", num(cert.inverse_temperature ?? null, "inverse_temperature")),
    row("Flow time", num(cert.flow_time ?? null, "flow_time")),
    row("Initialization", cert.initialization || "—"),
    row("Neighbouring", cert.neighbouring || "—"),
  ];
  container.append(h("dl", { class: "facts" }, description));
  container.append(h("h3", {}, "Guarantees of the whole release"), guarantees(cert, ""));
  if (Array.isArray(cert.renyi) && cert.renyi.length) {
    container.append(h("h3", {}, "Rényi curve"), ...renyiFigure(cert.renyi, width));
  }
  if (Array.isArray(cert.hockey_stick) && cert.hockey_stick.length) {
    container.append(
      h("h3", {}, "Hockey-stick divergence"),
      h(
        "table",
        { class: "compact" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "ε′"), h("th", { scope: "col" }, "δ(ε′)"))),
        h(
          "tbody",
          {},
          cert.hockey_stick.map((p, i) =>
            h("tr", {}, h("td", {}, num(p.epsilon, `hockey_stick.${i}.epsilon`)), h("td", {}, num(p.delta, `hockey_stick.${i}.delta`))),
          ),
        ),
      ),
    );
  }
  if (cert.per_sample) {
    container.append(h("h3", {}, "Per sample"), guarantees(cert.per_sample, "per_sample."));
  }
  container.append(
    h("h3", {}, "Assumptions"),
    h("ol", { class: "assumptions" }, (cert.assumptions || []).map((a) => h("li", {}, a))),
    h(
      "details",
      {},
      h("summary", {}, "Raw certificate (JSON, numbers to 12 significant digits)"),
      h("pre", { class: "raw", tabindex: "0" }, JSON.stringify(cert, (_, v) => round12(v), 2)),
    ),
  );
}
