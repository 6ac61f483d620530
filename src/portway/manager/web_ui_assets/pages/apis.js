// API proxies: list with search, detail, create/edit (schema-generated form), OpenAPI import.

import { add, h, api, clear, table, when, badge, section, errorBox, link, button, pretty, toast, enc, session, listAll } from "../lib.js";
import { schemaForm, submitForm } from "../form.js";
import { openapiDoc } from "./access.js";

export async function list(main) {
  const rows = await listAll("/apis");
  const search = h("input", { id: "api-search", type: "search", placeholder: "name, base path, host or project" });
  const holder = h("div");
  const draw = () => {
    const q = search.value.trim().toLowerCase();
    const shown = rows.filter((r) => !q || [r.name, r.project, r.base_path, ...(r.hosts || [])].some((v) => String(v).toLowerCase().includes(q)));
    clear(holder, table(
      [
        { title: "Name", cell: (r) => link(`#/apis/${enc(r.project)}/${enc(r.name)}`, r.name) },
        { title: "Project", cell: (r) => r.project },
        { title: "Base path", cell: (r) => h("code", {}, r.base_path) },
        { title: "Backends", cell: (r) => r.backends },
        { title: "Endpoints", cell: (r) => r.endpoints },
        { title: "Deployed to", cell: (r) => (r.deployments.length ? r.deployments.map((d) => badge(`${d.environment} r${d.api_revision}`, d.redeploy_required ? "warn" : "ok")) : badge("not deployed", "muted")) },
      ],
      shown,
      rows.length ? "No API matches the search." : "No API proxy yet.",
    ));
  };
  search.addEventListener("input", draw);
  add(main, 
    h("div", { class: "page-head" }, h("h1", {}, "API proxies"), session.can("write_apis") ? h("div", { class: "actions" }, link("#/apis/import", "Import OpenAPI"), h("a", { class: "btn btn-primary", href: "#/apis/new" }, "New API proxy")) : null),
    h("div", { class: "field field-inline" }, h("label", { for: "api-search" }, "Search"), search),
    holder,
  );
  draw();
}

export async function detail(main, project, name) {
  const base = `/projects/${enc(project)}/apis/${enc(name)}`;
  const [doc, status, revisions] = await Promise.all([api("GET", base), api("GET", `${base}/status`), api("GET", `${base}/revisions`)]);
  const canWrite = session.can("write_apis");
  add(main, 
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, `${doc.name}`, h("span", { class: "muted" }, ` in ${project}`)),
      h("div", { class: "actions" }, link(`#/apis/${enc(project)}/${enc(name)}/policies`, canWrite ? "Edit policies" : "Policies"), canWrite ? h("a", { class: "btn btn-primary", href: `#/apis/${enc(project)}/${enc(name)}/edit` }, "Edit") : null),
    ),
    doc.description ? h("p", { class: "muted" }, doc.description) : null,
    h(
      "div",
      { class: "grid-2" },
      section(
        "Routing",
        h("dl", { class: "props" },
          h("dt", {}, "Base path"), h("dd", {}, h("code", {}, doc.base_path)),
          h("dt", {}, "Hosts"), h("dd", {}, doc.hosts.length ? doc.hosts.join(", ") : "any"),
          h("dt", {}, "Methods"), h("dd", {}, doc.methods.length ? doc.methods.join(", ") : "all"),
          h("dt", {}, "Balancing"), h("dd", {}, doc.balancing),
          h("dt", {}, "Strip base path"), h("dd", {}, doc.strip_base_path ? "yes" : "no"),
          h("dt", {}, "Working copy"), h("dd", {}, `version ${doc.version}`),
        ),
      ),
      section(
        "Deployments",
        table(
          [
            { title: "Environment", cell: (d) => link(`#/environments/${enc(d.environment)}`, d.environment) },
            { title: "API revision", cell: (d) => d.api_revision },
            { title: "State", cell: (d) => (d.redeploy_required ? badge("redeploy required", "warn") : badge("current", "ok")) },
          ],
          status.deployments,
          "Not deployed anywhere.",
        ),
      ),
    ),
    section(
      "Backends",
      table(
        [
          { title: "URL", cell: (b) => h("code", {}, b.url) },
          { title: "Kind", cell: (b) => b.kind },
          { title: "Weight", cell: (b) => b.weight },
          { title: "Health check", cell: (b) => (b.health_check ? "on" : "off") },
        ],
        doc.backends,
      ),
    ),
    section(
      "Endpoints",
      table(
        [
          { title: "#", cell: (e) => doc.endpoints.indexOf(e) },
          { title: "Methods", cell: (e) => (e.methods || []).join(", ") || "all" },
          { title: "Path", cell: (e) => h("code", {}, e.path) },
          { title: "Policies", cell: (e) => ["request", "response", "error"].map((p) => (e.policies?.[p] || []).length).reduce((a, b) => a + b, 0) },
        ],
        doc.endpoints,
        "No endpoints: every path under the base path goes to the backends.",
      ),
    ),
    section("Policies", h("p", {}, ["request", "response", "error"].map((p) => `${p}: ${(doc.policies?.[p] || []).map((x) => x.name).join(", ") || "none"}`).join(" · "))),
    section(
      "Revisions",
      table(
        [
          { title: "Revision", cell: (r) => r.revision ?? r.api_revision ?? r.version },
          { title: "When", cell: (r) => when(r.at || r.created_at) },
          { title: "By", cell: (r) => r.actor || "" },
        ],
        revisions,
        "No saved revision.",
      ),
    ),
  );
}

export async function edit(main, project, name) {
  const doc = await openapiDoc();
  const creating = name === undefined;
  const projects = creating ? await api("GET", "/projects") : [];
  const current = creating ? {} : await api("GET", `/projects/${enc(project)}/apis/${enc(name)}`);
  const form = schemaForm(doc.components.schemas.ApiProxy, doc, current, { hide: ["policies"], skip: creating ? ["project"] : ["project", "name"], collapse: true });
  const projectSelect = h("select", { id: "api-project" }, projects.map((p) => h("option", { value: p.name }, p.name)));
  const choice = creating ? h("div", { class: "field" }, h("label", { for: "api-project" }, "Project"), projectSelect) : null;
  const element = submitForm(form, creating ? "Create API proxy" : "Save changes", async (body) => {
    const saved = creating
      ? await api("POST", `/projects/${enc(projectSelect.value)}/apis`, body)
      : await api("PUT", `/projects/${enc(project)}/apis/${enc(name)}`, { ...body, name });
    toast(`Saved ${saved.name}`);
    location.hash = `#/apis/${enc(saved.project)}/${enc(saved.name)}`;
  }, [choice]);
  element.classList.add("card");
  element.append(h("div", { class: "actions" }, link(creating ? "#/apis" : `#/apis/${enc(project)}/${enc(name)}`, "Cancel")));
  add(main, h("h1", {}, creating ? "New API proxy" : `Edit ${name}`), element);
}

export async function importPage(main) {
  const projects = await api("GET", "/projects");
  const project = h("select", { id: "imp-project" }, projects.map((p) => h("option", { value: p.name }, p.name)));
  const apiName = h("input", { id: "imp-name", required: true, maxlength: 63 });
  const url = h("input", { id: "imp-url", type: "url", placeholder: "https://…/openapi.json" });
  const file = h("input", { id: "imp-file", type: "file", accept: ".json,.yaml,.yml" });
  const backend = h("input", { id: "imp-backend", type: "url", placeholder: "http://backend:8080" });
  const preview = h("div", { "aria-live": "polite" });
  async function body() {
    const out = { name: apiName.value };
    if (file.files[0]) out.document = await file.files[0].text();
    else if (url.value) out.url = url.value;
    if (backend.value) out.backends = [{ url: backend.value }];
    return out;
  }
  async function send(dryRun) {
    clear(preview);
    try {
      const result = await api("POST", `/projects/${enc(project.value)}/apis/import`, await body(), { dry_run: dryRun ? "true" : undefined });
      if (dryRun) {
        preview.append(section("Preview (nothing stored)", (result.warnings || []).length ? h("ul", { class: "warnings" }, result.warnings.map((w) => h("li", {}, typeof w === "string" ? w : JSON.stringify(w)))) : h("p", {}, "No warnings."), pretty(result.api || result)));
      } else {
        toast("Imported");
        const made = result.api || result;
        location.hash = `#/apis/${enc(made.project || project.value)}/${enc(made.name)}`;
      }
    } catch (error) {
      preview.append(errorBox(error));
    }
  }
  add(main, 
    h("h1", {}, "Import from OpenAPI"),
    h(
      "form",
      { class: "card", onsubmit: (e) => { e.preventDefault(); send(true); } },
      h("div", { class: "field" }, h("label", { for: "imp-project" }, "Project"), project),
      h("div", { class: "field" }, h("label", { for: "imp-name" }, "API name"), apiName),
      h("div", { class: "field" }, h("label", { for: "imp-url" }, "Document URL"), url),
      h("div", { class: "field" }, h("label", { for: "imp-file" }, "…or upload a file"), file),
      h("div", { class: "field" }, h("label", { for: "imp-backend" }, "Backend URL (optional, else the document's servers)"), backend),
      h("div", { class: "actions" }, h("button", { type: "submit", class: "btn btn-secondary" }, "Preview (dry run)"), button("Import", () => send(false), "primary")),
    ),
    preview,
  );
}
