// DOM helpers of the dashboard: element builders, number and time formatting.
//
// Every value from the API reaches the page through textContent or an attribute, never as
// markup, so a dataset or key name cannot inject HTML.

const SVG_NS = "http://www.w3.org/2000/svg";

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function setAttributes(node, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = String(value);
    else if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else node.setAttribute(name, value === true ? "" : String(value));
  }
  return node;
}

/** An HTML element: h("td", {class: "n"}, "text", child, ...). */
export function h(tag, attrs, ...children) {
  return append(setAttributes(document.createElement(tag), attrs), children);
}

/** An SVG element in the SVG namespace. */
export function s(tag, attrs, ...children) {
  return append(setAttributes(document.createElementNS(SVG_NS, tag), attrs), children);
}

/** A number as shown on the page: at most 6 significant digits, "—" for null. */
export function fmt(value) {
  if (value === null || value === undefined) return "—";
  if (!Number.isFinite(value)) return value > 0 ? "∞" : "−∞";
  if (value === 0) return "0";
  const abs = Math.abs(value);
  if (abs >= 1e-4 && abs < 1e9) return String(Number(value.toPrecision(6)));
  return value.toExponential(3).replace(/\.?0+e/, "e");
}

/**
 * A number rounded to 12 significant digits, for text a person reads (the raw certificate):
 * 0.9999999999999999 becomes 1 and 4.6999999999999975 becomes 4.7; the float noise of sums
 * and splits sits in the 16th digit, far below anything a privacy parameter means.
 */
export function round12(value) {
  return typeof value === "number" && Number.isFinite(value) ? Number(value.toPrecision(12)) : value;
}

/** A percentage with one decimal. */
export function pct(fraction) {
  if (!Number.isFinite(fraction)) return "—";
  return `${(fraction * 100).toFixed(1)}%`;
}

/**
 * A span showing a number, with the exact API value in data-value so tests and assistive
 * tools can read it without the rounding of the display.
 */
export function num(value, field, tag = "span") {
  return h(
    tag,
    { class: "num", "data-field": field, "data-value": value === null ? "null" : String(value) },
    fmt(value),
  );
}

/** An API timestamp as "YYYY-MM-DD HH:MM:SS UTC" in a <time> element (date, then time). */
export function time(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return h("time", { datetime: String(iso) }, String(iso));
  const text = date.toISOString();
  return h(
    "time",
    { datetime: String(iso) },
    h("span", { class: "date" }, text.slice(0, 10)),
    " ",
    h("span", { class: "clock" }, `${text.slice(11, 19)} UTC`),
  );
}

/** Remove every child of node. */
export function clear(node) {
  node.replaceChildren();
  return node;
}

/** A visually hidden span (read by screen readers only). */
export function sr(text) {
  return h("span", { class: "visually-hidden" }, text);
}
