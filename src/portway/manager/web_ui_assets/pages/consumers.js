// Consumers: list, create, credentials (shown once, rotate with grace, expire, disable), grants.

import { add, h, api, clear, table, when, badge, section, errorBox, link, button, toast, enc, session, listAll } from "../lib.js";
import { schemaForm, submitForm } from "../form.js";
import { openapiDoc } from "./access.js";

export async function list(main) {
  const [rows, doc] = await Promise.all([listAll("/consumers"), openapiDoc()]);
  add(main, 
    h("h1", {}, "Consumers"),
    table(
      [
        { title: "Name", cell: (c) => link(`#/consumers/${enc(c.name)}`, c.name) },
        { title: "Description", cell: (c) => c.description },
        { title: "Grants", cell: (c) => c.grants.length },
        { title: "State", cell: (c) => (c.disabled ? badge("disabled", "muted") : badge("enabled", "ok")) },
        { title: "Created", cell: (c) => when(c.created_at) },
      ],
      rows,
      "No consumer yet.",
    ),
  );
  if (!session.can("manage_consumers")) return;
  const form = schemaForm(doc.components.schemas.ConsumerSpec, doc, {}, { skip: ["grants", "roles"] });
  add(main, section("New consumer", submitForm(form, "Create consumer", async (body) => {
    const made = await api("POST", "/consumers", body);
    location.hash = `#/consumers/${enc(made.name)}`;
  })));
}

export async function detail(main, name) {
  const base = `/consumers/${enc(name)}`;
  const [consumer, credentials, grants, doc] = await Promise.all([api("GET", base), api("GET", `${base}/credentials`), api("GET", `${base}/grants`), openapiDoc()]);
  const canManage = session.can("manage_consumers");
  const secretBox = h("div", { "aria-live": "polite" });
  const showSecret = (made, verb) => {
    clear(secretBox, h("div", { class: "alert alert-secret", role: "alert" }, h("strong", {}, `${verb}. Copy the key now; it is shown once: `), h("code", { class: "secret", id: "new-secret" }, made.secret)));
  };
  async function rotate(c) {
    const grace = window.prompt("Grace period in seconds during which the old key keeps working", "3600");
    if (grace === null) return;
    try {
      const made = await api("POST", `${base}/credentials/${c.id}/rotate`, { grace_seconds: Number(grace) });
      const fresh = made.credential || made;
      await redraw();
      showSecret(fresh, "Key rotated");
    } catch (error) {
      clear(secretBox, errorBox(error));
    }
  }
  async function patch(c, body, message) {
    try {
      await api("PATCH", `${base}/credentials/${c.id}`, body);
      toast(message);
      await redraw();
    } catch (error) {
      clear(secretBox, errorBox(error));
    }
  }
  const credHolder = h("div");
  async function redraw() {
    const rows = await api("GET", `${base}/credentials`);
    clear(credHolder, credentialTable(rows));
  }
  function credentialTable(rows) {
    return table(
      [
        { title: "Kind", cell: (c) => c.kind },
        { title: "Key / user", cell: (c) => h("code", {}, c.key_prefix ? `${c.key_prefix}…` : c.username) },
        { title: "Label", cell: (c) => c.label },
        { title: "Created", cell: (c) => when(c.created_at) },
        { title: "Expires", cell: (c) => when(c.expires_at) },
        { title: "State", cell: (c) => (c.disabled ? badge("disabled", "muted") : c.active ? badge("active", "ok") : badge("expired", "warn")) },
        ...(canManage
          ? [{ title: "Actions", cell: (c) => h("div", { class: "item-actions" },
              c.kind === "api_key" && c.active ? button("Rotate", () => rotate(c), "secondary", { class: "btn btn-small", "aria-label": `Rotate key ${c.key_prefix}` }) : null,
              c.active ? button("Expire now", () => patch(c, { expires_at: new Date().toISOString() }, "Credential expired"), "secondary", { class: "btn btn-small", "aria-label": `Expire ${c.key_prefix || c.username}` }) : null,
              button(c.disabled ? "Enable" : "Disable", () => patch(c, { disabled: !c.disabled }, c.disabled ? "Enabled" : "Disabled"), c.disabled ? "secondary" : "danger", { class: `btn btn-small ${c.disabled ? "" : "btn-danger"}`, "aria-label": `${c.disabled ? "Enable" : "Disable"} ${c.key_prefix || c.username}` }),
            ) }]
          : []),
      ],
      rows,
      "No credential.",
    );
  }
  clear(credHolder, credentialTable(credentials));
  add(main, 
    h("div", { class: "page-head" }, h("h1", {}, consumer.name), consumer.disabled ? badge("disabled", "muted") : badge("enabled", "ok")),
    consumer.description ? h("p", { class: "muted" }, consumer.description) : null,
    section(
      "Credentials",
      secretBox,
      credHolder,
      canManage ? h("div", { class: "actions" }, button("New API key", async () => {
        try {
          const made = await api("POST", `${base}/credentials`, { kind: "api_key" });
          await redraw();
          showSecret(made, "API key created");
        } catch (error) {
          clear(secretBox, errorBox(error));
        }
      }, "primary")) : null,
    ),
  );
  const grantRows = Array.isArray(grants) ? grants : grants.grants || [];
  add(main, 
    section(
      "Grants",
      table(
        [
          { title: "API", cell: (g) => link(`#/apis/${enc(g.project)}/${enc(g.api)}`, `${g.project}/${g.api}`) },
          { title: "Environments", cell: (g) => (g.environments || []).join(", ") || "all" },
          { title: "Expires", cell: (g) => when(g.expires_at) },
          { title: "Limits", cell: (g) => (g.limits && Object.keys(g.limits).length ? h("code", {}, JSON.stringify(g.limits)) : "—") },
          ...(canManage ? [{ title: "", cell: (g) => button("Revoke", async () => { await api("DELETE", `${base}/grants/${enc(g.project)}/${enc(g.api)}`); location.reload(); }, "danger", { class: "btn btn-small btn-danger", "aria-label": `Revoke grant ${g.project}/${g.api}` }) }] : []),
        ],
        grantRows,
        "No grant: this consumer may call no API that checks grants.",
      ),
    ),
  );
  if (canManage) {
    const apis = await listAll("/apis");
    const target = h("select", { id: "grant-api" }, apis.map((a) => h("option", { value: `${a.project}/${a.name}` }, `${a.project}/${a.name}`)));
    const form = schemaForm(doc.components.schemas.GrantTerms, doc, {});
    const choice = h("div", { class: "field" }, h("label", { for: "grant-api" }, "API proxy"), target);
    add(main, section("Grant access to an API", submitForm(form, "Save grant", async (body) => {
      const [project, apiName] = target.value.split("/");
      await api("PUT", `${base}/grants/${enc(project)}/${enc(apiName)}`, body);
      toast("Grant saved");
      location.reload();
    }, [choice])));
  }
}
