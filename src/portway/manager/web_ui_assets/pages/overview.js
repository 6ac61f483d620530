// The dashboard and the analytics explorer, both over GET /analytics.

import { add, h, api, clear, table, when, badge, section, errorBox, link, every, enc, listAll, params, setParams, statusBadge } from "../lib.js";
import { lineChart } from "../charts.js";
import { activeTable } from "./alerts.js";

const RANGES = [
  ["15m", 15 * 60, 15],
  ["1h", 3600, 60],
  ["6h", 6 * 3600, 300],
  ["24h", 86400, 900],
  ["7d", 7 * 86400, 3600],
];

function select(id, label, options, value, onchange) {
  const el = h("select", { id, onchange: (e) => onchange(e.target.value) }, options.map(([v, text]) => h("option", { value: v, selected: v === value }, text)));
  return h("div", { class: "field field-inline" }, h("label", { for: id }, label), el);
}

async function queryAnalytics(filters) {
  const range = RANGES.find((r) => r[0] === (filters.range || "1h")) || RANGES[1];
  const end = new Date();
  const start = new Date(end.getTime() - range[1] * 1000);
  const result = await api("GET", "/analytics", undefined, {
    start: start.toISOString(),
    end: end.toISOString(),
    bucket_seconds: range[2],
    environment: filters.environment,
    api: filters.api,
    consumer: filters.consumer,
  });
  return [result, range[2]];
}

function stat(label, value, hint) {
  return h("div", { class: "stat" }, h("div", { class: "stat-label" }, label), h("div", { class: "stat-value" }, value), hint ? h("div", { class: "stat-hint" }, hint) : null);
}

function trafficView(result, bucket) {
  const times = result.buckets.map((b) => Date.parse(b.start) / 1000);
  const rps = result.buckets.map((b) => b.count / bucket);
  const errorRate = result.buckets.map((b) => (b.count ? (100 * b.errors) / b.count : 0));
  // a bucket without a latency (no request) is a gap in the chart, not a zero
  const latency = (name) => result.buckets.map((b) => (b.latency_ms ? b.latency_ms[name] : null));
  const errors = Object.entries(result.by_status).filter(([s]) => Number(s) >= 400).reduce((n, [, c]) => n + c, 0);
  const lat = result.latency_ms || {};
  const fmt = (v) => (v === undefined ? "—" : `${v.toFixed(1)} ms`);
  return [
    h(
      "div",
      { class: "stats" },
      stat("Requests", String(result.total)),
      stat("Error rate (status ≥ 400)", result.total ? `${((100 * errors) / result.total).toFixed(2)} %` : "—"),
      stat("Latency p50", fmt(lat.p50)),
      stat("Latency p90", fmt(lat.p90)),
      stat("Latency p95", fmt(lat.p95)),
      stat("Latency p99", fmt(lat.p99)),
    ),
    h(
      "div",
      { class: "charts" },
      lineChart("Requests per second", times, [{ label: "req/s", values: rps }]),
      lineChart("Error rate (status ≥ 400)", times, [{ label: "errors %", values: errorRate }], "%"),
      lineChart("Latency over time", times, ["p50", "p95", "p99"].map((name) => ({ label: name, values: latency(name), points: true })), " ms"),
    ),
  ];
}

function tops(result) {
  const apis = Object.entries(result.by_api).sort((a, b) => b[1] - a[1]).slice(0, 10);
  const statuses = Object.entries(result.by_status).sort();
  return h(
    "div",
    { class: "grid-3" },
    section("Top APIs", table([{ title: "API", cell: (r) => r[0] }, { title: "Requests", cell: (r) => r[1] }], apis, "No traffic in this range.")),
    section("Top consumers", table([{ title: "Consumer", cell: (r) => r.consumer || "anonymous" }, { title: "Requests", cell: (r) => r.count }], result.top_consumers, "No traffic in this range.")),
    section("By status", table([{ title: "Status", cell: (r) => statusBadge(r[0]) }, { title: "Requests", cell: (r) => r[1] }], statuses, "No traffic in this range.")),
  );
}

export function workerTable(workers) {
  return table(
    [
      { title: "Worker", cell: (w) => w.id },
      { title: "Environment", cell: (w) => w.environment },
      { title: "State", cell: (w) => badge(w.state, w.state === "up" ? "ok" : w.state === "down" ? "error" : "warn") },
      { title: "Served / desired", cell: (w) => `${w.served_revision ?? "—"} / ${w.desired_revision ?? "—"}` },
      { title: "Converged", cell: (w) => (w.in_sync ? badge("in sync", "ok") : badge("behind", "warn")) },
      { title: "Last report", cell: (w) => when(w.last_report) },
    ],
    workers,
    "No worker has registered yet.",
  );
}

export async function dashboard(main) {
  const p = params();
  const environments = await api("GET", "/environments");
  const environment = p.get("environment") || "";
  const range = p.get("range") || "1h";
  add(main, 
    h("div", { class: "page-head" }, h("h1", {}, "Dashboard"), h(
      "div",
      { class: "filters" },
      select("dash-env", "Environment", [["", "All environments"], ...environments.map((e) => [e.name, e.name])], environment, (v) => setParams({ environment: v })),
      select("dash-range", "Range", RANGES.map((r) => [r[0], `Last ${r[0]}`]), range, (v) => setParams({ range: v })),
    )),
  );
  const traffic = h("div", { "aria-live": "polite" });
  const fleet = h("div");
  add(main, traffic, fleet);
  try {
    const [result, bucket] = await queryAnalytics({ environment, range });
    append(traffic, trafficView(result, bucket), tops(result));
  } catch (error) {
    traffic.append(errorBox(error));
  }
  async function refreshFleet() {
    const workers = (await api("GET", "/workers")).filter((w) => !environment || w.environment === environment);
    const active = await api("GET", "/alerts/active");
    const deployments = [];
    for (const env of environments.filter((e) => !environment || e.name === environment)) {
      deployments.push(...(await listAll(`/environments/${enc(env.name)}/deployments`, {}, 5)));
    }
    deployments.sort((a, b) => b.at.localeCompare(a.at));
    clear(
      fleet,
      h(
        "div",
        { class: "grid-2" },
        section("Workers and convergence", workerTable(workers)),
        section("Recent deployments", deploymentTable(deployments.slice(0, 8))),
      ),
      section("Active alerts", activeTable(active), h("p", {}, link("#/alerts", "All alerts, events and rules"))),
    );
  }
  await refreshFleet();
  every(10000, () => refreshFleet().catch(() => {}));
}

function append(el, ...children) {
  el.append(...children.flat());
}

export function deploymentTable(rows) {
  return table(
    [
      { title: "When", cell: (d) => when(d.at) },
      { title: "Environment", cell: (d) => link(`#/environments/${enc(d.environment)}`, d.environment) },
      { title: "Action", cell: (d) => badge(d.action, d.action === "rollback" ? "warn" : "neutral") },
      { title: "API", cell: (d) => (d.api ? `${d.project}/${d.api}` : (d.items || []).map((i) => `${i.project}/${i.api}`).join(", ")) },
      { title: "Revision", cell: (d) => d.env_revision },
      { title: "By", cell: (d) => d.actor },
      { title: "Note", cell: (d) => d.note || "" },
    ],
    rows,
    "No deployment yet.",
  );
}

export async function analytics(main) {
  const p = params();
  const [environments, apis] = await Promise.all([api("GET", "/environments"), listAll("/apis")]);
  const filters = { environment: p.get("environment") || "", api: p.get("api") || "", consumer: p.get("consumer") || "", range: p.get("range") || "1h" };
  const consumer = h("input", { id: "an-consumer", value: filters.consumer, placeholder: "any" });
  add(main, 
    h("h1", {}, "Analytics"),
    h(
      "form",
      { class: "filters card", onsubmit: (e) => { e.preventDefault(); setParams({ consumer: consumer.value }); } },
      select("an-env", "Environment", [["", "All"], ...environments.map((e) => [e.name, e.name])], filters.environment, (v) => setParams({ environment: v })),
      select("an-api", "API", [["", "All"], ...[...new Set(apis.map((a) => a.name))].map((n) => [n, n])], filters.api, (v) => setParams({ api: v })),
      select("an-range", "Range", RANGES.map((r) => [r[0], `Last ${r[0]}`]), filters.range, (v) => setParams({ range: v })),
      h("div", { class: "field field-inline" }, h("label", { for: "an-consumer" }, "Consumer"), consumer),
      h("button", { type: "submit", class: "btn btn-secondary" }, "Apply"),
    ),
  );
  try {
    const [result, bucket] = await queryAnalytics(filters);
    add(main, ...trafficView(result, bucket), tops(result));
  } catch (error) {
    add(main, errorBox(error));
  }
}
