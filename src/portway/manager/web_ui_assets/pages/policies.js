// The policy editor: request/response/error lists at API or endpoint scope; add, edit (config
// through the policy type's JSON schema), remove, reorder by drag or by keyboard (Move up/down).

import { add, h, api, clear, section, errorBox, badge, button, toast, enc, session } from "../lib.js";
import { schemaForm } from "../form.js";
import { openapiDoc } from "./access.js";

const PHASES = ["request", "response", "error"];

export async function editor(main, project, name) {
  const base = `/projects/${enc(project)}/apis/${enc(name)}`;
  const [types, doc, proxy] = await Promise.all([api("GET", "/schema/policies"), openapiDoc(), api("GET", base)]);
  const canWrite = session.can("write_apis");
  const scopeSelect = h("select", { id: "pol-scope" }, h("option", { value: "" }, "The whole API proxy"), proxy.endpoints.map((e, i) => h("option", { value: String(i) }, `Endpoint ${i}: ${(e.methods || []).join(",") || "ALL"} ${e.path}`)));
  const lists = h("div");
  const editorArea = h("div");
  add(main, 
    h("div", { class: "page-head" }, h("h1", {}, `Policies of ${name}`), h("a", { href: `#/apis/${enc(project)}/${enc(name)}` }, "Back to the API")),
    h("div", { class: "field field-inline" }, h("label", { for: "pol-scope" }, "Scope"), scopeSelect),
    lists,
    editorArea,
  );
  scopeSelect.addEventListener("change", draw);
  const scopeBase = () => (scopeSelect.value === "" ? base : `${base}/endpoints/${scopeSelect.value}`);

  async function draw() {
    clear(editorArea);
    const current = await api("GET", `${scopeBase()}/policies`);
    clear(lists, h("div", { class: "grid-3" }, PHASES.map((phase) => phaseCard(phase, current[phase] || []))));
  }

  async function reorder(phase, names, focusName, direction) {
    try {
      await api("PUT", `${scopeBase()}/policy-order/${phase}`, { names });
      await draw();
      lists.querySelector(`[data-policy="${CSS.escape(phase + "/" + focusName)}"] button[data-move="${direction}"]`)?.focus();
    } catch (error) {
      lists.prepend(errorBox(error));
    }
  }

  function phaseCard(phase, entries) {
    const names = entries.map((p) => p.name);
    let dragged = null;
    const items = entries.map((p, index) => {
      const li = h(
        "li",
        { class: "policy", draggable: canWrite ? "true" : null, dataset: { policy: `${phase}/${p.name}` } },
        h("div", { class: "policy-main" }, h("span", { class: "grip", "aria-hidden": "true" }, canWrite ? "⋮⋮" : ""), h("strong", {}, p.name), h("span", { class: "muted" }, ` ${p.type}`)),
        h("div", { class: "policy-tags" }, p.shadow ? badge("shadow", "warn") : null, p.active === false ? badge("inactive", "muted") : null, p.condition ? badge("conditional", "neutral") : null, p.global_ref ? badge(`global: ${p.global_ref}`, "neutral") : null),
        canWrite
          ? h(
              "div",
              { class: "item-actions" },
              h("button", { type: "button", class: "btn btn-small", "data-move": "up", disabled: index === 0, "aria-label": `Move ${p.name} up`, onclick: () => { const n = [...names]; n.splice(index - 1, 0, n.splice(index, 1)[0]); reorder(phase, n, p.name, "up"); } }, "↑"),
              h("button", { type: "button", class: "btn btn-small", "data-move": "down", disabled: index === entries.length - 1, "aria-label": `Move ${p.name} down`, onclick: () => { const n = [...names]; n.splice(index + 1, 0, n.splice(index, 1)[0]); reorder(phase, n, p.name, "down"); } }, "↓"),
              button("Edit", () => openEditor(phase, p), "secondary", { class: "btn btn-small", "aria-label": `Edit ${p.name}` }),
              button("Remove", async () => { await api("DELETE", `${scopeBase()}/policies/${phase}/${enc(p.name)}`); toast(`Removed ${p.name}`); draw(); }, "danger", { class: "btn btn-small btn-danger", "aria-label": `Remove ${p.name}` }),
            )
          : null,
      );
      li.addEventListener("dragstart", () => { dragged = p.name; });
      li.addEventListener("dragover", (e) => e.preventDefault());
      li.addEventListener("drop", (e) => {
        e.preventDefault();
        if (!dragged || dragged === p.name) return;
        const n = names.filter((x) => x !== dragged);
        n.splice(n.indexOf(p.name) + (names.indexOf(dragged) < index ? 1 : 0), 0, dragged);
        reorder(phase, n, dragged, "up");
      });
      return li;
    });
    return section(
      `${phase[0].toUpperCase()}${phase.slice(1)} policies`,
      entries.length ? h("ol", { class: "policy-list" }, items) : h("p", { class: "empty" }, "None."),
      canWrite ? button(`Add ${phase} policy`, () => openEditor(phase, null), "secondary") : null,
    );
  }

  function openEditor(phase, existing) {
    const allowed = Object.entries(types).filter(([, t]) => t.phases.includes(phase));
    const typeSelect = h("select", { id: "pol-type", disabled: Boolean(existing) }, allowed.map(([n]) => h("option", { value: n, selected: existing?.type === n }, n)));
    const summary = h("p", { class: "hint" });
    const common = h("div");
    const config = h("div");
    const status = h("div", { "aria-live": "polite" });
    let commonForm;
    let configForm;
    function build() {
      const type = types[typeSelect.value];
      summary.textContent = type.summary;
      commonForm = schemaForm(doc.components.schemas.PolicySpec, doc, existing || { name: typeSelect.value }, { skip: ["type", "config", "global_ref"] });
      configForm = schemaForm(type.config, type.config, existing?.config || {});
      clear(common, commonForm.element);
      clear(config, h("fieldset", { class: "group" }, h("legend", {}, `Configuration of ${typeSelect.value}`), configForm.element));
    }
    typeSelect.addEventListener("change", build);
    build();
    const form = h(
      "form",
      { class: "card editor", novalidate: true, onsubmit: async (e) => {
        e.preventDefault();
        clear(status);
        commonForm.clearErrors();
        configForm.clearErrors();
        let body;
        try {
          body = { ...commonForm.read(), type: typeSelect.value, config: configForm.read() };
        } catch (error) {
          commonForm.showErrors([{ field: `body.${error.path}`, message: error.message }]);
          return;
        }
        try {
          if (existing) await api("PUT", `${scopeBase()}/policies/${phase}/${enc(existing.name)}`, body);
          else await api("POST", `${scopeBase()}/policies/${phase}`, body);
          toast(`Saved ${body.name}`);
          await draw();
        } catch (error) {
          const details = error.details || [];
          const rest = commonForm.showErrors(details.filter((d) => !d.field?.startsWith("body.config")));
          const restConfig = configForm.showErrors(details.filter((d) => d.field?.startsWith("body.config")), "body.config.");
          if (rest.length || restConfig.length || !details.length) status.append(errorBox(error));
        }
      } },
      h("h2", {}, existing ? `Edit ${existing.name} (${phase})` : `Add a ${phase} policy`),
      h("div", { class: "field" }, h("label", { for: "pol-type" }, "Policy type"), typeSelect, summary),
      common,
      config,
      status,
      h("div", { class: "actions" }, h("button", { type: "submit", class: "btn btn-primary" }, existing ? "Save policy" : "Add policy"), button("Cancel", () => clear(editorArea))),
    );
    clear(editorArea, form);
    typeSelect.focus();
    form.scrollIntoView({ block: "start" });
  }

  await draw();
}
