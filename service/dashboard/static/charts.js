// Inline-SVG charts: one plot function with linear, time, log10 and log2 x axes.
//
// A chart is drawn at the pixel width of its container (redrawn on resize), so its text keeps
// a legible size on a phone. Each <svg> is role="img" with a <title> and <desc> summarising
// it; the same numbers are always in a table next to it.

import { fmt, s } from "./dom.js";

let serial = 0;

const MARGIN = { top: 36, right: 16, bottom: 40, left: 52 };

const AXES = {
  linear: { to: (x) => x, from: (u) => u },
  time: { to: (x) => x, from: (u) => u },
  log10: { to: (x) => Math.log10(x), from: (u) => 10 ** u },
  log2: { to: (x) => Math.log2(x), from: (u) => 2 ** u },
};

/** Rounded tick values covering [lo, hi] (about `count` of them). */
export function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((v) => v >= raw) || raw;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    ticks.push(Number(v.toPrecision(12)));
  }
  return ticks;
}

function integerTicks(lo, hi, most = 7) {
  const first = Math.ceil(lo - 1e-9);
  const last = Math.floor(hi + 1e-9);
  const stride = Math.max(1, Math.ceil((last - first + 1) / most));
  const ticks = [];
  for (let u = first; u <= last; u += stride) ticks.push(u);
  return ticks;
}

function shortTime(ms, span) {
  const text = new Date(ms).toISOString();
  return span < 86_400_000 ? text.slice(11, 19) : text.slice(5, 16).replace("T", " ");
}

function xTicks(kind, lo, hi) {
  if (kind === "log10") return integerTicks(lo, hi).map((u) => [u, `1e${u}`]);
  if (kind === "log2") return integerTicks(lo, hi).map((u) => [u, fmt(2 ** u)]);
  if (kind === "time") return [[lo, shortTime(lo, hi - lo)], [hi, shortTime(hi, hi - lo)]];
  return niceTicks(lo, hi, 5).map((u) => [u, fmt(u)]);
}

/**
 * Draw a chart.
 *
 * options: {width, height, title, desc, xKind ("linear" | "time" | "log10" | "log2"),
 *   xLabel, yLabel, series: [{name, cls, points: [[x, y | null]], step, dots}],
 *   hrefs: [{y, label, cls, side ("start" | "end", where the label sits)}],
 *   vrefs: [{x, label, cls}], marks: [{x, y, label, cls}]}
 */
export function plot(options) {
  const width = Math.max(260, Math.round(options.width || 640));
  const height = options.height || 240;
  const axis = AXES[options.xKind || "linear"];
  const inner = {
    left: MARGIN.left,
    right: width - MARGIN.right,
    top: MARGIN.top,
    bottom: height - MARGIN.bottom,
  };

  const xs = [];
  const ys = [0];
  for (const series of options.series) {
    for (const [x, y] of series.points) {
      xs.push(axis.to(x));
      if (y !== null && Number.isFinite(y)) ys.push(y);
    }
  }
  for (const series of options.series) {
    if (series.extendTo !== undefined) xs.push(axis.to(series.extendTo));
  }
  for (const ref of options.hrefs || []) ys.push(ref.y);
  for (const ref of options.vrefs || []) xs.push(axis.to(ref.x));
  for (const mark of options.marks || []) {
    xs.push(axis.to(mark.x));
    ys.push(mark.y);
  }
  let x0 = Math.min(...xs);
  let x1 = Math.max(...xs);
  if (!(x1 > x0)) {
    const pad = options.xKind === "time" ? 60_000 : 1;
    x0 -= pad;
    x1 += pad;
  }
  const yMax = Math.max(...ys) || 1;
  const yTicks = niceTicks(0, yMax * 1.05, 4);
  const y1 = Math.max(yTicks[yTicks.length - 1], yMax * 1.05);

  const X = (u) => inner.left + ((u - x0) / (x1 - x0)) * (inner.right - inner.left);
  const Y = (v) => inner.bottom - (v / y1) * (inner.bottom - inner.top);
  const id = `chart-${++serial}`;

  const svg = s("svg", {
    class: "chart",
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "img",
    "aria-labelledby": `${id}-title ${id}-desc`,
  });
  svg.append(
    s("title", { id: `${id}-title` }, options.title),
    s("desc", { id: `${id}-desc` }, options.desc || ""),
  );

  const grid = s("g", { class: "grid", "aria-hidden": "true" });
  for (const v of yTicks) {
    grid.append(
      s("line", { x1: inner.left, x2: inner.right, y1: Y(v), y2: Y(v) }),
      s("text", { x: inner.left - 6, y: Y(v) + 4, "text-anchor": "end" }, fmt(v)),
    );
  }
  for (const [u, label] of xTicks(options.xKind, x0, x1)) {
    const anchor = options.xKind === "time" ? (u === x0 ? "start" : "end") : "middle";
    grid.append(
      s("line", { class: "tick", x1: X(u), x2: X(u), y1: inner.bottom, y2: inner.bottom + 5 }),
      s("text", { x: X(u), y: inner.bottom + 18, "text-anchor": anchor }, label),
    );
  }
  grid.append(
    s("line", { class: "axis", x1: inner.left, x2: inner.right, y1: Y(0), y2: Y(0) }),
    s(
      "text",
      { class: "axis-label", x: (inner.left + inner.right) / 2, y: height - 4, "text-anchor": "middle" },
      options.xLabel || "",
    ),
    s(
      "text",
      { class: "axis-label", x: 4, y: 14, "text-anchor": "start" },
      options.yLabel || "",
    ),
  );
  svg.append(grid);

  for (const ref of options.hrefs || []) {
    svg.append(
      s("line", { class: `ref ${ref.cls || ""}`, x1: inner.left, x2: inner.right, y1: Y(ref.y), y2: Y(ref.y) }),
      s(
        "text",
        ref.side === "start"
          ? { class: `ref-label ${ref.cls || ""}`, x: inner.left + 4, y: Y(ref.y) - 4, "text-anchor": "start" }
          : { class: `ref-label ${ref.cls || ""}`, x: inner.right - 2, y: Y(ref.y) - 4, "text-anchor": "end" },
        ref.label,
      ),
    );
  }
  for (const ref of options.vrefs || []) {
    const x = X(axis.to(ref.x));
    svg.append(
      s("line", { class: `ref ${ref.cls || ""}`, x1: x, x2: x, y1: inner.top, y2: inner.bottom }),
      s("text", { class: `ref-label ${ref.cls || ""}`, x: x + 4, y: inner.top + 10 }, ref.label),
    );
  }

  for (const series of options.series) {
    let d = "";
    let open = false;
    let last = null;
    for (const [x, y] of series.points) {
      if (y === null || !Number.isFinite(y)) {
        open = false;
        continue;
      }
      const px = X(axis.to(x));
      const py = Y(y);
      if (!open) d += `M${px.toFixed(1)},${py.toFixed(1)}`;
      else if (series.step) d += `H${px.toFixed(1)}V${py.toFixed(1)}`;
      else d += `L${px.toFixed(1)},${py.toFixed(1)}`;
      open = true;
      last = [px, py];
    }
    if (series.step && last && series.extendTo !== undefined) {
      d += `H${X(axis.to(series.extendTo)).toFixed(1)}`;
    }
    const group = s("g", { class: `series ${series.cls || ""}` });
    if (d) group.append(s("path", { d }));
    if (series.dots) {
      for (const [x, y] of series.points) {
        if (y === null || !Number.isFinite(y)) continue;
        group.append(s("circle", { cx: X(axis.to(x)), cy: Y(y), r: 3 }));
      }
    }
    svg.append(group);
  }

  for (const mark of options.marks || []) {
    const cx = X(axis.to(mark.x));
    const cy = Y(mark.y);
    svg.append(
      s("rect", { class: `mark ${mark.cls || ""}`, x: cx - 4, y: cy - 4, width: 8, height: 8 }),
      s("text", { class: "ref-label", x: cx + 7, y: cy + 14 }, mark.label),
    );
  }
  return svg;
}

/** A horizontal bar of `fraction` (0..1, clipped), decorative: the number is in the text. */
export function bar(fraction, cls = "") {
  const width = Math.max(0, Math.min(1, Number.isFinite(fraction) ? fraction : 1)) * 100;
  return s(
    "svg",
    { class: `bar ${cls}`, viewBox: "0 0 100 8", preserveAspectRatio: "none", "aria-hidden": "true", focusable: "false" },
    s("rect", { class: "bar-track", x: 0, y: 0, width: 100, height: 8 }),
    s("rect", { class: "bar-fill", x: 0, y: 0, width, height: 8 }),
    s("line", { class: "bar-warn", x1: 80, x2: 80, y1: 0, y2: 8 }),
  );
}
