// The audit log (field-level changes, secrets masked by the API) and global policies.

import { add, h, api, clear, table, when, badge, section, toast, enc, session, listAll, deleteButton } from "../lib.js";
import { schemaForm, submitForm } from "../form.js";
import { openapiDoc } from "./access.js";

function value(v) {
  if (v === null || v === undefined) return h("span", { class: "muted" }, "—");
  return h("code", {}, typeof v === "string" ? v : JSON.stringify(v));
}

export async function audit(main) {
  const rows = await listAll("/audit", {}, 200);
  const filter = h("input", { id: "audit-filter", type: "search", placeholder: "actor, action or target" });
  const holder = h("div");
  const draw = () => {
    const q = filter.value.trim().toLowerCase();
    clear(holder, table(
      [
        { title: "When", cell: (r) => when(r.at) },
        { title: "Actor", cell: (r) => r.actor },
        { title: "Action", cell: (r) => badge(r.action) },
        { title: "Target", cell: (r) => h("code", { class: "target" }, r.target) },
        { title: "Changes", cell: (r) => h("table", { class: "changes" }, h("tbody", {}, (r.changes || []).map((c) => h("tr", {}, h("th", { scope: "row" }, c.field), h("td", { class: "del" }, value(c.old)), h("td", { class: "add" }, value(c.new)))))) },
      ],
      rows.filter((r) => !q || [r.actor, r.action, r.target].some((v) => String(v).toLowerCase().includes(q))),
      "No audit entry.",
    ));
  };
  filter.addEventListener("input", draw);
  add(main, h("h1", {}, "Audit log"), h("div", { class: "field field-inline" }, h("label", { for: "audit-filter" }, "Filter"), filter), holder);
  draw();
}

export async function globalPolicies(main) {
  const [rows, doc] = await Promise.all([api("GET", "/global-policies"), openapiDoc()]);
  add(main, 
    h("h1", {}, "Global policies"),
    h("p", { class: "muted" }, "Shared policy definitions that API proxies refer to by name."),
    table(
      [
        { title: "Name", cell: (g) => g.name },
        { title: "Type", cell: (g) => (g.policy || g).type },
        { title: "Description", cell: (g) => (g.policy || g).description || g.description || "" },
        ...(session.can("write_apis") ? [{ title: "", cell: (g) => deleteButton(g.name, `/global-policies/${enc(g.name)}`, main) }] : []),
      ],
      rows,
      "No global policy.",
    ),
  );
  if (!session.can("write_apis")) return;
  const form = schemaForm(doc.components.schemas.GlobalPolicy, doc, {});
  add(main, section("New global policy", submitForm(form, "Create global policy", async (body) => {
    await api("POST", "/global-policies", body);
    toast("Saved");
    location.reload();
  })));
}
