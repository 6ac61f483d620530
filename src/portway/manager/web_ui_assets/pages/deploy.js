// Environments, deployments (deploy, undeploy, rollback with a note; history with per-worker
// results; diff of two revisions) and the workers registry.

import { add, h, api, clear, table, when, badge, section, errorBox, link, button, toast, enc, session, askNote, every, listAll } from "../lib.js";
import { schemaForm, submitForm } from "../form.js";
import { openapiDoc } from "./access.js";
import { deploymentTable, workerTable } from "./overview.js";

export async function environments(main) {
  const [rows, doc] = await Promise.all([api("GET", "/environments"), openapiDoc()]);
  add(main, 
    h("h1", {}, "Environments"),
    table(
      [
        { title: "Name", cell: (e) => link(`#/environments/${enc(e.name)}`, e.name) },
        { title: "Type", cell: (e) => badge(e.type) },
        { title: "Desired revision", cell: (e) => e.desired_revision ?? "—" },
        { title: "Access URL", cell: (e) => e.access_url || "—" },
        { title: "Description", cell: (e) => e.description },
      ],
      rows,
      "No environment yet.",
    ),
  );
  if (!session.can("manage_environments")) return;
  const form = schemaForm(doc.components.schemas.Environment, doc, {});
  add(main, section("New environment", submitForm(form, "Create environment", async (body) => {
    const made = await api("POST", "/environments", body);
    location.hash = `#/environments/${enc(made.name)}`;
  })));
}

function results(d) {
  if (!(d.results || []).length) return h("span", { class: "muted" }, "no worker");
  return h("ul", { class: "results" }, d.results.map((r) => h("li", {}, r.success ? badge("ok", "ok") : badge("failed", "error"), ` ${r.worker}`, r.served_revision ? ` → r${r.served_revision}` : "", r.error ? h("span", { class: "muted" }, ` ${r.error}`) : "")));
}

export async function environment(main, name) {
  const base = `/environments/${enc(name)}`;
  const [env, history, apis, workers] = await Promise.all([api("GET", base), listAll(`${base}/deployments`, {}, 100), listAll("/apis"), api("GET", "/workers")]);
  const canDeploy = session.can("deploy");
  const status = h("div", { "aria-live": "polite" });
  async function run(body, title) {
    const note = await askNote(title);
    if (note === null) return;
    clear(status);
    try {
      const made = await api("POST", `${base}/deployments`, { ...body, note });
      toast(`${made.action} published as revision ${made.env_revision}`);
      location.reload();
    } catch (error) {
      status.append(errorBox(error));
    }
  }
  add(main, 
    h("div", { class: "page-head" }, h("h1", {}, `Environment ${env.name}`), h("div", { class: "actions" }, badge(env.type), link(`#/environments/${enc(name)}/diff`, "Compare revisions"))),
    h("div", { class: "stats" }, h("div", { class: "stat" }, h("div", { class: "stat-label" }, "Desired revision"), h("div", { class: "stat-value" }, String(env.desired_revision ?? "—"))), h("div", { class: "stat" }, h("div", { class: "stat-label" }, "Workers"), h("div", { class: "stat-value" }, String(workers.filter((w) => w.environment === name).length)))),
    status,
  );
  if (canDeploy) {
    const apiSelect = h("select", { id: "dep-api" }, apis.map((a) => h("option", { value: `${a.project}/${a.name}` }, `${a.project}/${a.name}`)));
    const revisionSelect = h("select", { id: "dep-revision" });
    const target = () => {
      const [project, api_] = apiSelect.value.split("/");
      return { project, api: api_ };
    };
    async function loadRevisions() {
      const { project, api: name_ } = target();
      if (!name_) return;
      const rows = await api("GET", `/projects/${enc(project)}/apis/${enc(name_)}/revisions`);
      clear(revisionSelect, rows.slice().reverse().map((r) => h("option", { value: String(r.revision) }, `revision ${r.revision} · ${when(r.created_at)} · ${r.actor}`)));
      if (rows.length > 1) revisionSelect.value = String(rows[rows.length - 2].revision);
    }
    apiSelect.addEventListener("change", loadRevisions);
    await loadRevisions();
    add(main, section("Deploy", h("div", { class: "inline-form" },
      h("div", { class: "field field-inline" }, h("label", { for: "dep-api" }, "API proxy"), apiSelect),
      button("Deploy", () => run({ ...target(), action: "deploy" }, `Deploy ${apiSelect.value} to ${name}`), "primary"),
      button("Undeploy", () => run({ ...target(), action: "undeploy" }, `Undeploy ${apiSelect.value} from ${name}`), "danger"),
    ), h("div", { class: "inline-form" },
      h("div", { class: "field field-inline" }, h("label", { for: "dep-revision" }, "Roll back to"), revisionSelect),
      button("Roll back", () => run({ ...target(), action: "rollback", api_revision: Number(revisionSelect.value) }, `Roll back ${apiSelect.value} in ${name} to revision ${revisionSelect.value}`), "secondary"),
    )));
  }
  add(main, 
    section("Workers", workerTable(workers.filter((w) => w.environment === name))),
    section(
      "History",
      table(
        [
          { title: "Revision", cell: (d) => d.env_revision },
          { title: "When", cell: (d) => when(d.at) },
          { title: "Action", cell: (d) => badge(d.action, d.action === "rollback" ? "warn" : "neutral") },
          { title: "API", cell: (d) => (d.items || []).map((i) => `${i.project}/${i.api} r${i.api_revision ?? "—"}`).join(", ") },
          { title: "By", cell: (d) => d.actor },
          { title: "Note", cell: (d) => d.note },
          { title: "Workers", cell: results },
        ],
        history,
        "Nothing deployed yet.",
      ),
    ),
  );
}

function lineDiff(a, b) {
  const left = a.split("\n");
  const right = b.split("\n");
  const n = left.length;
  const m = right.length;
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) lcs[i][j] = left[i] === right[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const out = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && left[i] === right[j]) { out.push([" ", left[i]]); i++; j++; }
    else if (i < n && (j === m || lcs[i + 1][j] >= lcs[i][j + 1])) { out.push(["-", left[i]]); i++; }
    else { out.push(["+", right[j]]); j++; }
  }
  return out;
}

export async function diff(main, name) {
  const base = `/environments/${enc(name)}`;
  const env = await api("GET", base);
  const latest = env.desired_revision || 1;
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const from = h("input", { id: "diff-from", type: "number", min: 1, value: params.get("from") || Math.max(1, latest - 1) });
  const to = h("input", { id: "diff-to", type: "number", min: 1, value: params.get("to") || latest });
  const out = h("div", { "aria-live": "polite" });
  async function show() {
    clear(out);
    try {
      const [a, b] = await Promise.all([api("GET", `${base}/revisions/${from.value}`), api("GET", `${base}/revisions/${to.value}`)]);
      const strip = (r) => JSON.stringify({ ...r, created_at: undefined, revision: undefined }, null, 2);
      const lines = lineDiff(strip(a), strip(b));
      const changed = lines.filter(([k]) => k !== " ").length;
      out.append(h("p", {}, changed ? `${changed} changed lines between revision ${from.value} and ${to.value}.` : "The two revisions are identical."), h("pre", { class: "code diff", tabindex: "0", role: "region", "aria-label": "Differences" }, lines.filter((l, idx) => l[0] !== " " || lines.slice(Math.max(0, idx - 3), idx + 4).some((x) => x[0] !== " ")).map(([k, text]) => h("span", { class: k === "+" ? "add" : k === "-" ? "del" : "same" }, `${k} ${text}\n`))));
    } catch (error) {
      out.append(errorBox(error));
    }
  }
  add(main, 
    h("h1", {}, `Compare revisions of ${name}`),
    h("form", { class: "filters card", onsubmit: (e) => { e.preventDefault(); show(); } },
      h("div", { class: "field field-inline" }, h("label", { for: "diff-from" }, "From revision"), from),
      h("div", { class: "field field-inline" }, h("label", { for: "diff-to" }, "To revision"), to),
      h("button", { type: "submit", class: "btn btn-primary" }, "Compare")),
    out,
  );
  await show();
}

export async function workers(main) {
  const holder = h("div", { "aria-live": "polite" });
  add(main, h("h1", {}, "Workers"), h("p", { class: "muted" }, "Every registered worker, its state and the revision it serves; refreshed every 5 seconds."), holder);
  async function draw() {
    const rows = await api("GET", "/workers");
    clear(holder, table(
      [
        { title: "Worker", cell: (w) => w.id },
        { title: "Environment", cell: (w) => link(`#/environments/${enc(w.environment)}`, w.environment) },
        { title: "State", cell: (w) => badge(w.state, w.state === "up" ? "ok" : w.state === "down" ? "error" : "warn") },
        { title: "Served / desired", cell: (w) => `${w.served_revision ?? "—"} / ${w.desired_revision ?? "—"}` },
        { title: "In sync", cell: (w) => (w.in_sync ? badge("yes", "ok") : badge("no", "warn")) },
        { title: "Healthy", cell: (w) => (w.healthy ? badge("healthy", "ok") : badge("not healthy", "error")) },
        { title: "Converged in", cell: (w) => (w.converge_seconds == null ? "—" : `${w.converge_seconds.toFixed(2)} s`) },
        { title: "Address", cell: (w) => h("code", {}, w.address || "—") },
        { title: "Last report", cell: (w) => when(w.last_report) },
      ],
      rows,
      "No worker has registered yet.",
      "Workers",
    ), section(
      "Policy counters",
      h("p", { class: "muted" }, "Each policy's counters since the worker process started, as its last status report gave them."),
      table(
        [
          { title: "Worker", cell: (c) => c.worker },
          { title: "Attached to", cell: (c) => h("code", {}, c.key) },
          { title: "Scope", cell: (c) => c.scope },
          { title: "Policy", cell: (c) => c.policy },
          ...["evaluated", "allowed", "denied", "errors", "skipped", "shadow_denied"].map((name) => ({ title: name.replace("_", " "), cell: (c) => String(c[name]) })),
        ],
        rows.flatMap((w) => w.policy_counters.map((c) => ({ worker: w.id, ...c }))),
        "No worker has reported a policy yet.",
        "Policy counters",
      ),
    ));
  }
  await draw();
  every(5000, () => draw().catch(() => {}));
}
