// Alerts: what the rules produce (active alerts, events, deliveries) for every reader; the rules,
// notification channels and silences themselves, created from their JSON Schemas and deleted by
// those who may manage environments.

import { add, h, api, table, when, badge, section, toast, enc, session, deleteButton, pretty } from "../lib.js";
import { schemaForm, submitForm, resolve } from "../form.js";
import { openapiDoc } from "./access.js";

const SEVERITY = { critical: "error", warning: "warn", info: "neutral" };
const STATUS = { firing: "error", pending: "warn", resolved: "ok" };
const DELIVERY = { delivered: "ok", pending: "warn", failed: "error" };

function value(v) {
  return v === undefined || v === null ? "—" : typeof v === "number" ? String(Math.round(v * 1000) / 1000) : String(v);
}

export function activeTable(rows) {
  return table(
    [
      { title: "Rule", cell: (a) => a.rule },
      { title: "Subject", cell: (a) => h("code", {}, a.subject) },
      { title: "Status", cell: (a) => badge(a.status, STATUS[a.status] || "neutral") },
      { title: "Summary", cell: (a) => a.summary || "" },
      { title: "Value", cell: (a) => value(a.value) },
      { title: "Since", cell: (a) => when(a.fired_at || a.bad_since) },
    ],
    rows,
    "No alert is pending or firing.",
    "Active alerts",
  );
}

function eventTable(rows) {
  return table(
    [
      { title: "When", cell: (e) => when(e.at) },
      { title: "Rule", cell: (e) => e.rule },
      { title: "Severity", cell: (e) => badge(e.severity, SEVERITY[e.severity]) },
      { title: "Status", cell: (e) => badge(e.status, STATUS[e.status] || "neutral") },
      { title: "Subject", cell: (e) => h("code", {}, e.subject) },
      { title: "Summary", cell: (e) => e.summary || "" },
      { title: "Notified", cell: (e) => (e.silenced_by?.length ? `silenced by ${e.silenced_by.join(", ")}` : (e.channels || []).join(", ") || "—") },
    ],
    rows,
    "No alert has fired yet.",
    "Recent events",
  );
}

function deliveryTable(rows) {
  return table(
    [
      { title: "Created", cell: (d) => when(d.created_at) },
      { title: "Channel", cell: (d) => d.channel },
      { title: "Event", cell: (d) => h("code", {}, d.event) },
      { title: "State", cell: (d) => badge(d.state, DELIVERY[d.state] || "neutral") },
      { title: "Attempts", cell: (d) => String(d.attempts) },
      { title: "Last error", cell: (d) => d.last_error || "—" },
      { title: "Delivered", cell: (d) => when(d.delivered_at) },
    ],
    rows,
    "No notification yet.",
    "Deliveries",
  );
}

function target(c) {
  const t = c.target || {};
  if (t.kind === "email") return `e-mail to ${(t.to || []).join(", ")}`;
  return `${t.format || "json"} webhook to ${t.url}${t.has_secret ? " (signed)" : ""}`;
}

export async function page(main) {
  const manage = session.can("manage_environments");
  const [active, events, deliveries, rules, channels, silences, doc] = await Promise.all([
    api("GET", "/alerts/active"),
    api("GET", "/alerts/events", undefined, { limit: 50 }),
    api("GET", "/alerts/deliveries", undefined, { limit: 50 }),
    api("GET", "/alerts/rules"),
    api("GET", "/alerts/channels"),
    api("GET", "/alerts/silences"),
    manage ? openapiDoc() : null,
  ]);
  const remove = (what, path) => (manage ? [{ title: "", cell: (row) => deleteButton(`${what} ${row.name || row.id}`, path(row), main) }] : []);
  add(
    main,
    h("h1", {}, "Alerts"),
    section("Active alerts", activeTable(active)),
    section("Recent events", eventTable(events)),
    section("Notifications", deliveryTable(deliveries)),
    section(
      "Rules",
      table(
        [
          { title: "Name", cell: (r) => r.name },
          { title: "Condition", cell: (r) => h("code", {}, r.condition.kind) },
          { title: "Severity", cell: (r) => badge(r.severity, SEVERITY[r.severity]) },
          { title: "Enabled", cell: (r) => (r.enabled ? "yes" : "no") },
          { title: "For / resolve after", cell: (r) => `${r.for_seconds} s / ${r.resolve_after_seconds} s` },
          { title: "Channels", cell: (r) => r.channels.join(", ") || "—" },
          ...remove("rule", (r) => `/alerts/rules/${enc(r.name)}`),
        ],
        rules,
        "No alert rule.",
        "Rules",
      ),
    ),
    section(
      "Notification channels",
      table(
        [
          { title: "Name", cell: (c) => c.name },
          { title: "Target", cell: target },
          { title: "Resolved notices", cell: (c) => (c.send_resolved ? "yes" : "no") },
          ...remove("channel", (c) => `/alerts/channels/${enc(c.name)}`),
        ],
        channels,
        "No notification channel.",
        "Notification channels",
      ),
    ),
    section(
      "Silences",
      table(
        [
          { title: "Rule", cell: (s) => s.rule || "every rule" },
          { title: "Subject contains", cell: (s) => s.subject_contains || "—" },
          { title: "From", cell: (s) => when(s.starts_at) },
          { title: "Until", cell: (s) => when(s.ends_at) },
          { title: "Comment", cell: (s) => s.comment || "" },
          ...remove("silence", (s) => `/alerts/silences/${enc(s.id)}`),
        ],
        silences,
        "No silence.",
        "Silences",
      ),
    ),
  );
  if (!manage) return;
  const schemas = doc.components.schemas;
  for (const [title, schema, path, label] of [
    ["New rule", "RuleSpec", "/alerts/rules", "Create rule"],
    ["New notification channel", "ChannelSpec", "/alerts/channels", "Create channel"],
    ["New silence", "SilenceSpec", "/alerts/silences", "Create silence"],
  ]) {
    const form = schemaForm(schemas[schema], doc, {});
    const kinds = choices(schemas[schema], doc);
    add(
      main,
      section(
        title,
        kinds ? h("details", { class: "group" }, h("summary", {}, "The kinds the JSON fields accept"), pretty(kinds)) : null,
        submitForm(form, label, async (body) => {
          await api("POST", path, body);
          toast("Saved");
          location.reload();
        }),
      ),
    );
  }
}

// For a schema whose fields are a choice of kinds (a rule's condition, a channel's target): each
// field's kinds with the settings they take and their defaults, so the JSON can be written.
function choices(schema, doc) {
  const out = {};
  for (const [name, prop] of Object.entries(schema.properties || {})) {
    const options = prop.oneOf || prop.anyOf;
    if (!options || !prop.discriminator) continue;
    out[name] = options.map((o) => {
      const s = resolve(o, doc);
      return Object.fromEntries(Object.entries(s.properties || {}).map(([k, p]) => [k, p.const ?? p.default ?? p.enum?.[0] ?? `(${p.type || "value"})`]));
    });
  }
  return Object.keys(out).length ? out : null;
}
