// The request log: individual traffic records (GET /requests), newest first, filtered, paged by
// cursor ("More"), and one record's regions, timings and pipeline.

import { add, h, api, clear, table, when, section, errorBox, link, enc, params, setParams, statusBadge, pretty, button } from "../lib.js";

const PAGE_SIZES = ["5", "20", "50", "200"];

// [query parameter, label, input type, placeholder]
const FILTERS = [
  ["correlation_id", "Correlation id", "text", "any"],
  ["environment", "Environment", "text", "any"],
  ["api", "API", "text", "any"],
  ["consumer", "Consumer", "text", "any"],
  ["status", "Status", "text", "503 or 5xx"],
  ["min_latency_ms", "Min latency (ms)", "number", "0"],
  ["start", "From (UTC)", "datetime-local", ""],
  ["end", "To (UTC)", "datetime-local", ""],
];

// A datetime-local value read as UTC ("2026-12-02T02:40" → ISO 8601), or undefined when empty.
function utc(value) {
  return value ? new Date(value + "Z").toISOString() : undefined;
}

function query(p) {
  const q = {};
  for (const [key] of FILTERS) q[key] = p.get(key) || undefined;
  q.start = utc(q.start);
  q.end = utc(q.end);
  return q;
}

function ms(value) {
  return value === undefined ? "—" : `${Number(value).toFixed(1)} ms`;
}

function recordLink(r) {
  // the link names the record (its id is unique); the text is the correlation id a client sent
  return link(`#/requests/${enc(r.id)}?at=${enc(r.timestamp)}`, h("code", {}, r.correlation_id || r.id));
}

const COLUMNS = [
  { title: "When", cell: (r) => when(r.timestamp) },
  { title: "Status", cell: (r) => statusBadge(r.status) },
  { title: "Request", cell: (r) => h("code", {}, `${r.method} ${r.path}`) },
  { title: "Environment", cell: (r) => r.environment || "—" },
  { title: "API", cell: (r) => (r.api ? `${r.project}/${r.api}` : "—") },
  { title: "Consumer", cell: (r) => r.consumer || "anonymous" },
  { title: "Total", cell: (r) => ms(r.total_ms) },
  { title: "Correlation id", cell: recordLink },
];

export async function list(main) {
  const p = params();
  const limit = PAGE_SIZES.includes(p.get("limit")) ? p.get("limit") : "50";
  const perPage = h("select", { id: "rq-limit", name: "limit" }, PAGE_SIZES.map((n) => h("option", { value: n, selected: n === limit }, n)));
  const inputs = FILTERS.map(([key, label, type, placeholder]) =>
    h("input", { id: `rq-${key}`, name: key, type, placeholder, value: p.get(key) || "", min: type === "number" ? 0 : null, step: type === "number" ? "any" : null }),
  );
  const form = h(
    "form",
    {
      class: "filters card",
      "aria-label": "Filters",
      onsubmit: (e) => {
        e.preventDefault();
        setParams(Object.fromEntries([...inputs, perPage].map((i) => [i.name, i.value.trim()])));
      },
    },
    FILTERS.map(([key, label], i) => h("div", { class: "field field-inline" }, h("label", { for: `rq-${key}` }, label), inputs[i])),
    h("div", { class: "field field-inline" }, h("label", { for: "rq-limit" }, "Per page"), perPage),
    h("button", { type: "submit", class: "btn btn-primary" }, "Search"),
    h("a", { class: "btn btn-secondary", href: "#/requests" }, "Clear"),
  );
  const results = h("div", { "aria-live": "polite" });
  add(main, h("h1", {}, "Request log"), h("p", { class: "muted" }, "Individual requests the workers logged, newest first (the last hour unless a range is given)."), form, results);
  const rows = [];
  const more = button("More", () => load(), "secondary", { id: "rq-more" });
  const holder = h("div");
  let cursor;
  async function load() {
    const page = await api("GET", "/requests", undefined, { ...query(p), limit, cursor });
    rows.push(...page.items);
    cursor = page.next_cursor;
    clear(holder, table(COLUMNS, rows, "No request matches these filters.", "Requests"));
    more.hidden = !cursor;
    holder.append(h("p", { class: "muted" }, `${rows.length} shown${cursor ? "; more are older" : ""}.`));
  }
  add(results, holder, more);
  try {
    await load();
  } catch (error) {
    more.hidden = true;
    results.prepend(errorBox(error));
  }
}

function props(record, keys) {
  const present = keys.filter(([key]) => record[key] !== undefined && record[key] !== null && record[key] !== "");
  if (!present.length) return h("p", { class: "empty" }, "Not recorded for this request.");
  return h("dl", { class: "props" }, present.flatMap(([key, label, show]) => [h("dt", {}, label), h("dd", {}, show ? show(record[key]) : String(record[key]))]));
}

const REGIONS = [
  ["Who and where", [["correlation_id", "Correlation id"], ["id", "Record id"], ["timestamp", "When", when], ["environment", "Environment"], ["revision", "Revision"], ["worker", "Worker"], ["project", "Project"], ["api", "API"], ["endpoint", "Endpoint"], ["consumer", "Consumer"], ["credential", "Credential id"]]],
  ["Request from the client", [["method", "Method"], ["path", "Path", (v) => h("code", {}, v)], ["client_ip", "Client IP"], ["forwarded_for", "X-Forwarded-For"], ["request_bytes", "Body bytes"]]],
  ["Request to the backend", [["backend", "Backend"], ["backend_path", "Target", (v) => h("code", {}, v)], ["backend_request_bytes", "Body bytes"], ["retries", "Retries"], ["failovers", "Failovers"], ["circuit", "Circuit"]]],
  ["Response from the backend", [["backend_status", "Status", statusBadge], ["backend_response_bytes", "Body bytes"]]],
  ["Response to the client", [["status", "Status", statusBadge], ["response_bytes", "Bytes written"], ["error", "Error", (v) => h("code", {}, v)]]],
  ["Timings", [["connect_ms", "Connect", ms], ["first_byte_ms", "First byte", ms], ["backend_ms", "Backend", ms], ["pipeline_ms", "Policies", ms], ["total_ms", "Total", ms]]],
  ["Policies", [["policies", "Ran", (v) => v.join(", ")], ["denied_by", "Denied by", (v) => h("code", {}, v)]]],
];

export async function detail(main, id) {
  const at = params().get("at");
  // the record's own moment when the link carries it, else the last week
  const moment = at ? Date.parse(at) : Date.now();
  const start = new Date(moment - (at ? 60_000 : 7 * 86400_000)).toISOString();
  const end = new Date(moment + 60_000).toISOString();
  // a correlation id search also finds records by id; a client may reuse a correlation id
  const page = await api("GET", "/requests", undefined, { correlation_id: id, start, end, limit: 200 });
  const record = page.items.find((r) => r.id === id) || page.items[0];
  const title = record ? record.correlation_id || record.id : id;
  add(main, h("p", {}, link("#/requests", "← Request log")), h("h1", {}, "Request ", h("code", {}, title)));
  if (!record) {
    add(main, h("p", { class: "empty" }, "No request with this correlation id in the searched range."));
    return;
  }
  add(main, h("div", { class: "grid-2" }, REGIONS.map(([title, keys]) => section(title, props(record, keys)))));
  if (record.shadow?.length) add(main, section("Shadow verdicts", pretty(record.shadow)));
  if (record.detail) add(main, section("Captured (masked by the worker)", pretty(record.detail)));
}
