// Shared helpers: DOM building (text only, never HTML strings), the API client, formatting.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.message || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
  get details() {
    return this.problem.details || [];
  }
}

function csrfToken() {
  const found = document.cookie.split("; ").find((c) => c.startsWith("portway_csrf="));
  return found ? decodeURIComponent(found.slice("portway_csrf=".length)) : "";
}

export async function api(method, path, body, query) {
  const url = new URL("/api/v1" + path, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  }
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrfToken();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    if (response.status === 401 && !path.startsWith("/auth/")) {
      location.hash = "#/sign-in";
    }
    throw new ApiError(response.status, data);
  }
  return data;
}

// A paged list (`{items, next}`), read whole: follows `next` until the list ends or `max` items are read.
export async function listAll(path, query = {}, max = 1000) {
  const items = [];
  let cursor;
  do {
    const limit = Math.min(1000, max - items.length);
    const page = await api("GET", path, undefined, { ...query, limit, cursor });
    items.push(...page.items);
    cursor = page.next;
  } while (cursor && items.length < max);
  return items;
}

export const enc = encodeURIComponent;

export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

export function badge(text, kind = "neutral") {
  return h("span", { class: `badge badge-${kind}` }, text);
}

// An HTTP status as a badge: red from 500, amber from 400.
export function statusBadge(status) {
  const code = Number(status);
  return badge(String(status), code >= 500 ? "error" : code >= 400 ? "warn" : "ok");
}

// The query part of the page's address (`#/analytics?range=1h`): filters that survive a reload.
export function params() {
  return new URLSearchParams(location.hash.split("?")[1] || "");
}

export function setParams(values) {
  const p = params();
  for (const [k, v] of Object.entries(values)) v ? p.set(k, v) : p.delete(k);
  location.hash = location.hash.split("?")[0] + "?" + p.toString();
}

export function table(columns, rows, empty = "Nothing here yet.", label = "Table") {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h(
    "div",
    // a region that may scroll sideways: focusable so the keyboard can scroll it
    { class: "table-wrap", tabindex: "0", role: "region", "aria-label": label },
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c.title)))),
      h(
        "tbody",
        {},
        rows.map((row) => h("tr", {}, columns.map((c) => h("td", {}, c.cell(row))))),
      ),
    ),
  );
}

export function link(href, text) {
  return h("a", { href }, text);
}

export function button(text, onclick, kind = "secondary", attrs = {}) {
  return h("button", { type: "button", class: `btn btn-${kind}`, onclick, ...attrs }, text);
}

// A row's "Delete" button: DELETE `path`, then load the page anew; an error shows atop `main`.
export function deleteButton(what, path, main) {
  const remove = async () => {
    try {
      await api("DELETE", path);
      location.reload();
    } catch (error) {
      main.prepend(errorBox(error));
    }
  };
  return button("Delete", remove, "danger", { class: "btn btn-small btn-danger", "aria-label": `Delete ${what}` });
}

export function section(title, ...children) {
  return h("section", { class: "card" }, h("h2", {}, title), children);
}

export function errorBox(error) {
  const box = h("div", { class: "alert alert-error", role: "alert" });
  box.append(error.message || String(error));
  if (error.problem?.correlation_id) {
    box.append(h("small", {}, ` (correlation id ${error.problem.correlation_id})`));
  }
  return box;
}

let toastTimer;
export function toast(message, kind = "ok") {
  const region = document.getElementById("toast");
  if (!region) return;
  clear(region, h("div", { class: `toast toast-${kind}` }, message));
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => clear(region), 6000);
}

export function pretty(value) {
  return h("pre", { class: "code", tabindex: "0", role: "region", "aria-label": "JSON" }, JSON.stringify(value, null, 2));
}

// A dialog asking for a note (deploy, rollback): resolves to the note or null when cancelled.
export function askNote(title, label = "Note") {
  return new Promise((resolve) => {
    const input = h("input", { id: "dialog-note", type: "text", maxlength: 500 });
    const dialog = h(
      "dialog",
      { class: "dialog", "aria-labelledby": "dialog-title" },
      h(
        "form",
        { method: "dialog" },
        h("h2", { id: "dialog-title" }, title),
        h("label", { for: "dialog-note" }, label),
        input,
        h(
          "div",
          { class: "actions" },
          h("button", { class: "btn btn-primary", value: "ok" }, "Confirm"),
          h("button", { class: "btn btn-secondary", value: "cancel", formnovalidate: true }, "Cancel"),
        ),
      ),
    );
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "ok" ? input.value : null);
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
    input.focus();
  });
}

// The signed-in caller: name, role and the permissions the API reports for it.
export const session = {
  me: null,
  can(permission) {
    return Boolean(this.me?.permissions.includes(permission));
  },
};

// Page timers (live refresh), stopped when the page changes.
export const timers = [];
export function every(ms, fn) {
  timers.push(setInterval(fn, ms));
}

// Append children to `el`, skipping null/false (the DOM's own append would write "null").
export function add(el, ...children) {
  return append(el, children);
}
