// Forms generated from the JSON Schemas the API publishes (OpenAPI components, policy configs).
// No form is written by hand per field: each property becomes a labelled control by its type.

import { h, clear, errorBox } from "./lib.js";

let serial = 0;

function resolve(schema, root) {
  let s = schema || {};
  while (s.$ref) {
    const parts = s.$ref.replace(/^#\//, "").split("/");
    s = parts.reduce((node, key) => node?.[key], root) || {};
  }
  if (s.allOf && s.allOf.length === 1) return { ...resolve(s.allOf[0], root), ...s, allOf: undefined };
  return s;
}

function humanize(name) {
  const text = name.replace(/_/g, " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function nullable(schema, root, name) {
  const options = schema.anyOf || schema.oneOf;
  if (!options) {
    const resolved = resolve(schema, root);
    return [schema.$ref ? { ...resolved, title: schema.title || humanize(name), description: schema.description || resolved.description } : resolved, false];
  }
  const real = options.filter((o) => o.type !== "null");
  if (real.length === 1) return [{ ...resolve(real[0], root), title: schema.title, description: schema.description, default: schema.default }, true];
  return [{ ...schema, json: true }, true];
}

function labelOf(name, schema) {
  return schema.title || humanize(name);
}

function fieldId(path) {
  serial += 1;
  return `f${serial}-${path.replace(/[^A-Za-z0-9]+/g, "-")}`;
}

function hint(id, schema) {
  return schema.description ? h("p", { class: "hint", id: `${id}-hint` }, schema.description) : null;
}

function jsonControl(name, schema, value, path, required) {
  const id = fieldId(path);
  const area = h("textarea", { id, rows: 4, class: "mono", "aria-describedby": schema.description ? `${id}-hint` : null, spellcheck: "false" });
  area.value = value === undefined || value === null ? "" : JSON.stringify(value, null, 2);
  const wrap = h("div", { class: "field", dataset: { path } }, h("label", { for: id }, labelOf(name, schema), " (JSON)"), hint(id, schema), area);
  return {
    element: wrap,
    read() {
      const text = area.value.trim();
      if (!text) return undefined;
      try {
        return JSON.parse(text);
      } catch {
        throw new FieldError(path, "not valid JSON");
      }
    },
  };
}

export class FieldError extends Error {
  constructor(path, message) {
    super(message);
    this.path = path;
  }
}

function scalarControl(name, schema, value, path, required, isNullable) {
  const id = fieldId(path);
  const described = schema.description ? `${id}-hint` : null;
  let control;
  if (schema.enum) {
    control = h("select", { id, "aria-describedby": described });
    if (!required || isNullable) control.append(h("option", { value: "" }, "— default —"));
    for (const option of schema.enum) control.append(h("option", { value: String(option) }, String(option)));
    control.value = value === undefined || value === null ? (required && !isNullable ? String(schema.default ?? schema.enum[0]) : "") : String(value);
  } else if (schema.type === "boolean") {
    control = h("input", { id, type: "checkbox", "aria-describedby": described });
    control.checked = value === undefined ? Boolean(schema.default) : Boolean(value);
    const wrap = h("div", { class: "field field-check", dataset: { path } }, control, h("label", { for: id }, labelOf(name, schema)), hint(id, schema));
    return { element: wrap, read: () => control.checked };
  } else if (schema.type === "integer" || schema.type === "number") {
    control = h("input", { id, type: "number", step: schema.type === "integer" ? "1" : "any", min: schema.minimum, max: schema.maximum, "aria-describedby": described, placeholder: schema.default ?? "" });
    control.value = value === undefined || value === null ? "" : String(value);
  } else {
    const long = (schema.maxLength || 0) > 2000 && !schema.pattern;
    control = long
      ? h("textarea", { id, rows: 3, "aria-describedby": described })
      : h("input", { id, type: schema.format === "password" || /password|secret/.test(name) ? "password" : "text", maxlength: schema.maxLength, "aria-describedby": described, placeholder: schema.format === "date-time" ? "2026-12-31T00:00:00Z" : schema.default ?? "", autocomplete: "off" });
    control.value = value === undefined || value === null ? "" : String(value);
  }
  if (required) control.setAttribute("aria-required", "true");
  const wrap = h("div", { class: "field", dataset: { path } }, h("label", { for: id, class: required ? "required" : null }, labelOf(name, schema)), hint(id, schema), control);
  return {
    element: wrap,
    read() {
      const raw = control.value;
      if (raw === "") return isNullable && value !== undefined && value !== null ? null : undefined;
      if (schema.type === "integer") return Number.parseInt(raw, 10);
      if (schema.type === "number") return Number(raw);
      return raw;
    },
  };
}

function arrayControl(name, schema, value, path, root, options) {
  const items = resolve(schema.items || {}, root);
  const id = fieldId(path);
  if (items.type !== "object") {
    const area = h("textarea", { id, rows: 3, "aria-describedby": `${id}-hint` });
    area.value = (value || []).join("\n");
    const wrap = h("div", { class: "field", dataset: { path } }, h("label", { for: id }, labelOf(name, schema)), h("p", { class: "hint", id: `${id}-hint` }, (schema.description ? schema.description + " — " : "") + "one per line"), area);
    return {
      element: wrap,
      read() {
        const lines = area.value.split("\n").map((l) => l.trim()).filter(Boolean);
        if (!lines.length && value === undefined) return undefined;
        return items.type === "integer" ? lines.map((l) => Number.parseInt(l, 10)) : lines;
      },
    };
  }
  const list = h("ol", { class: "item-list" });
  const entries = [];
  const fieldset = h("fieldset", { class: "group", dataset: { path } }, h("legend", {}, labelOf(name, schema)), schema.description ? h("p", { class: "hint" }, schema.description) : null, list);
  const emptyNote = h("p", { class: "empty" }, "None yet.");
  function redraw() {
    emptyNote.hidden = entries.length > 0;
    clear(list);
    entries.forEach((entry, index) => {
      const controls = h(
        "div",
        { class: "item-actions" },
        h("button", { type: "button", class: "btn btn-small", disabled: index === 0, "aria-label": `Move item ${index + 1} up`, onclick: () => move(index, -1) }, "↑"),
        h("button", { type: "button", class: "btn btn-small", disabled: index === entries.length - 1, "aria-label": `Move item ${index + 1} down`, onclick: () => move(index, 1) }, "↓"),
        h("button", { type: "button", class: "btn btn-small btn-danger", "aria-label": `Remove item ${index + 1}`, onclick: () => { entries.splice(index, 1); redraw(); } }, "Remove"),
      );
      list.append(h("li", { class: "item" }, controls, entry.control.element));
    });
  }
  function build(itemValue, index) {
    return objectControl(`${labelOf(name, schema)} ${index + 1}`, items, itemValue, `${path}[${index}]`, root, options);
  }
  function move(index, delta) {
    const values = entries.map((e) => e.control.read());
    const [moved] = values.splice(index, 1);
    values.splice(index + delta, 0, moved);
    entries.splice(0, entries.length, ...values.map((v, i) => ({ control: build(v, i) })));
    redraw();
    list.children[index + delta]?.querySelector(`button[aria-label^="Move item ${index + delta + 1} ${delta < 0 ? "up" : "down"}"]`)?.focus();
  }
  (value || []).forEach((v, i) => entries.push({ control: build(v, i) }));
  list.before(emptyNote);
  fieldset.append(h("button", { type: "button", class: "btn btn-small", onclick: () => { entries.push({ control: build(undefined, entries.length) }); redraw(); list.lastElementChild?.querySelector("input,select,textarea")?.focus(); } }, `Add ${(items.title || "item").toLowerCase()}`));
  redraw();
  return {
    element: fieldset,
    read() {
      if (!entries.length && value === undefined) return undefined;
      return entries.map((e) => e.control.read());
    },
  };
}

function objectControl(name, schema, value, path, root, options, optional = false) {
  const properties = schema.properties || {};
  const required = new Set(schema.required || []);
  const hidden = new Set(options.hide || []);
  const children = [];
  const body = [];
  for (const [key, raw] of Object.entries(properties)) {
    if (hidden.has(key) || (path === "" && (options.skip || []).includes(key))) continue;
    const [prop, isNullable] = nullable(raw, root, key);
    const childPath = path ? `${path}.${key}` : key;
    const current = value ? value[key] : undefined;
    const control = controlFor(key, prop, current, childPath, root, required.has(key), isNullable, options);
    children.push([key, control]);
    body.push(control.element);
  }
  let element;
  if (path === "") element = h("div", { class: "form-fields" }, body);
  else if (options.collapse && !path.endsWith("]")) {
    // an optional nested settings group: folded until opened (errors inside open it)
    element = h("details", { class: "group", dataset: { path } }, h("summary", {}, labelOf(name, schema), schema.description ? h("span", { class: "hint" }, ` — ${schema.description}`) : null), body);
  } else element = h("fieldset", { class: "group", dataset: { path } }, h("legend", {}, labelOf(name, schema)), body);
  return {
    element,
    read() {
      const out = {};
      for (const key of hidden) if (value && key in value) out[key] = value[key];
      for (const [key, control] of children) {
        const v = control.read();
        if (v !== undefined) out[key] = v;
      }
      // an optional nested object left empty is not sent: the API's defaults apply (an empty
      // optional mirror is no mirror, not one without its required URL)
      if (optional && path !== "" && Object.keys(out).length === 0) return undefined;
      return out;
    },
  };
}

function controlFor(name, schema, value, path, root, required, isNullable, options) {
  if (schema.json) return jsonControl(name, schema, value, path, required);
  if (schema.type === "array") return arrayControl(name, schema, value, path, root, options);
  if (schema.type === "object" || schema.properties) {
    if (!schema.properties) return jsonControl(name, schema, value, path, required);
    return objectControl(name, schema, value, path, root, options, !required);
  }
  return scalarControl(name, schema, value, path, required, isNullable);
}

// Build a form for `schema` (resolved against `root`) holding `value`.
// options.skip: top-level keys to leave out; options.hide: keys kept as they are at any depth.
export function schemaForm(schema, root, value, options = {}) {
  const control = objectControl("", resolve(schema, root), value, "", root, options);
  const form = control.element;
  return {
    element: form,
    read: () => control.read(),
    clearErrors() {
      form.querySelectorAll(".field-error").forEach((e) => e.remove());
      form.querySelectorAll("[aria-invalid]").forEach((e) => e.removeAttribute("aria-invalid"));
    },
    // Show each 422 detail on the control its `field` names (`body.backends[0].url`).
    showErrors(details, strip = "body.") {
      this.clearErrors();
      let first = null;
      const unplaced = [];
      for (const detail of details) {
        let path = (detail.field || "").startsWith(strip) ? detail.field.slice(strip.length) : detail.field || "";
        let target = null;
        while (path && !target) {
          target = form.querySelector(`[data-path="${CSS.escape(path)}"]`);
          if (!target) path = path.replace(/(\.[^.[\]]+|\[\d+\])$/, "") === path ? "" : path.replace(/(\.[^.[\]]+|\[\d+\])$/, "");
        }
        if (!target) {
          unplaced.push(detail);
          continue;
        }
        for (let node = target; node && node !== form; node = node.parentElement) if (node.tagName === "DETAILS") node.open = true;
        const input = target.querySelector("input,select,textarea");
        const errorId = `${input?.id || "group"}-error`;
        const message = h("p", { class: "field-error", id: errorId }, detail.message);
        if (input) {
          input.setAttribute("aria-invalid", "true");
          input.setAttribute("aria-describedby", `${errorId} ${input.getAttribute("aria-describedby") || ""}`.trim());
          input.after(message);
        } else {
          target.append(message);
        }
        first = first || input;
      }
      first?.focus();
      return unplaced;
    },
  };
}

export { resolve };

// A <form> around a schema form: submitting reads it and calls `send(body)`; the fields a 422
// names show its messages, any other error appears above the button. `extra`: controls before it.
export function submitForm(form, label, send, extra = []) {
  const status = h("div", { "aria-live": "polite" });
  const onsubmit = async (event) => {
    event.preventDefault();
    clear(status);
    form.clearErrors();
    let body;
    try {
      body = form.read();
    } catch (error) {
      form.showErrors([{ field: `body.${error.path}`, message: error.message }]);
      return;
    }
    try {
      await send(body);
    } catch (error) {
      const details = error.details || [];
      if (form.showErrors(details).length || !details.length) status.append(errorBox(error));
    }
  };
  return h("form", { novalidate: true, onsubmit }, extra, form.element, status, h("button", { type: "submit", class: "btn btn-primary" }, label));
}
