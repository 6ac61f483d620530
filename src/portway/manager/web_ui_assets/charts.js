// Time-series charts with the vendored uPlot.

import uPlot from "./vendor/uPlot.esm.js";
import { h } from "./lib.js";

const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed"];

// series: [{label, values, points}] over `times` (unix seconds); a null value is a gap, and
// `points: true` marks every value so that one between gaps shows too.
export function lineChart(title, times, series, unit = "") {
  const figure = h("figure", { class: "chart" }, h("figcaption", {}, title));
  const holder = h("div", { class: "chart-area", role: "img", "aria-label": `${title} chart` });
  figure.append(holder);
  const opts = {
    width: 560,
    height: 220,
    series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: COLORS[i % COLORS.length], width: 2, fill: i === 0 && !s.points ? "rgba(37,99,235,0.08)" : undefined, points: s.points ? { show: true, size: 6 } : undefined, value: (_, v) => (v == null ? "—" : `${+v.toFixed(3)}${unit}`) }))],
    axes: [{ stroke: "#475569" }, { stroke: "#475569", size: 60, values: (_, ticks) => ticks.map((t) => `${+t.toFixed(2)}${unit}`) }],
    scales: { x: { time: true } },
    cursor: { drag: { x: false, y: false } },
  };
  const plot = new uPlot(opts, [times, ...series.map((s) => s.values)], holder);
  const resize = () => plot.setSize({ width: Math.max(280, holder.clientWidth), height: 220 });
  requestAnimationFrame(resize);
  new ResizeObserver(resize).observe(holder);
  return figure;
}
