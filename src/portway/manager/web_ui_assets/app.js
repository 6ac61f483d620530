// The Portway web manager: a hash-routed app of plain ES modules, a client of /api/v1 only.

import { h, clear, api, errorBox, session, timers } from "./lib.js";
import * as access from "./pages/access.js";
import * as overview from "./pages/overview.js";
import * as apis from "./pages/apis.js";
import * as policies from "./pages/policies.js";
import * as consumers from "./pages/consumers.js";
import * as deploy from "./pages/deploy.js";
import * as admin from "./pages/admin.js";
import * as requests from "./pages/requests.js";
import * as alerts from "./pages/alerts.js";
import * as matrix from "./pages/matrix.js";

const NAV = [
  ["Dashboard", "#/", null],
  ["API proxies", "#/apis", null],
  ["Consumers", "#/consumers", null],
  ["Environments", "#/environments", null],
  ["Workers", "#/workers", null],
  ["Analytics", "#/analytics", null],
  ["Request log", "#/requests", null],
  ["Alerts", "#/alerts", null],
  ["Network matrix", "#/matrix", null],
  ["Global policies", "#/global-policies", null],
  ["Audit log", "#/audit", "read_audit"],
  ["Users", "#/users", "manage_users"],
];

const ROUTES = [
  [/^\/sign-in$/, access.signIn, true],
  [/^\/$/, overview.dashboard],
  [/^\/analytics$/, overview.analytics],
  [/^\/requests$/, requests.list],
  [/^\/requests\/([^/]+)$/, requests.detail],
  [/^\/alerts$/, alerts.page],
  [/^\/matrix$/, matrix.page],
  [/^\/account$/, access.account],
  [/^\/users$/, access.users],
  [/^\/apis$/, apis.list],
  [/^\/apis\/new$/, apis.edit],
  [/^\/apis\/import$/, apis.importPage],
  [/^\/apis\/([^/]+)\/([^/]+)$/, apis.detail],
  [/^\/apis\/([^/]+)\/([^/]+)\/edit$/, apis.edit],
  [/^\/apis\/([^/]+)\/([^/]+)\/policies$/, policies.editor],
  [/^\/consumers$/, consumers.list],
  [/^\/consumers\/([^/]+)$/, consumers.detail],
  [/^\/environments$/, deploy.environments],
  [/^\/environments\/([^/]+)$/, deploy.environment],
  [/^\/environments\/([^/]+)\/diff$/, deploy.diff],
  [/^\/workers$/, deploy.workers],
  [/^\/global-policies$/, admin.globalPolicies],
  [/^\/audit$/, admin.audit],
];

async function loadMe() {
  try {
    session.me = await api("GET", "/me/permissions");
  } catch {
    session.me = null;
  }
}

function shell(path) {
  const current = "#" + path;
  const nav = h(
    "nav",
    { class: "sidebar", "aria-label": "Main" },
    h("a", { class: "brand", href: "#/" }, h("span", { class: "logo", "aria-hidden": "true" }, "◆"), "Portway"),
    h(
      "ul",
      {},
      NAV.filter(([, , perm]) => !perm || session.can(perm)).map(([label, href]) => {
        const active = href === "#/" ? current === "#/" : current.startsWith(href);
        return h("li", {}, h("a", { href, "aria-current": active ? "page" : null }, label));
      }),
    ),
    h("a", { class: "docs-link", href: "/api/v1/docs" }, "API docs"),
  );
  const header = h(
    "header",
    { class: "topbar" },
    h("div", { class: "who" }, h("a", { href: "#/account" }, session.me.username), h("span", { class: "badge badge-neutral" }, session.me.role)),
    h("button", { type: "button", class: "btn btn-secondary", onclick: access.signOut }, "Sign out"),
  );
  const main = h("main", { id: "main", tabindex: "-1" });
  const root = document.getElementById("app");
  clear(
    root,
    h("a", { class: "skip", href: "#main", onclick: (e) => { e.preventDefault(); main.focus(); } }, "Skip to content"),
    nav,
    h("div", { class: "content" }, header, main),
    h("div", { id: "toast", role: "status", "aria-live": "polite" }),
  );
  return main;
}

async function route() {
  timers.splice(0).forEach(clearInterval);
  const path = location.hash.replace(/^#/, "").split("?")[0] || "/";
  const match = ROUTES.map(([re, page, open]) => [path.match(re), page, open]).find(([m]) => m);
  if (!session.me && !(match && match[2])) {
    await loadMe();
    if (!session.me) {
      location.hash = "#/sign-in";
      return;
    }
  }
  if (match && match[2]) {
    const root = document.getElementById("app");
    clear(root);
    await match[1](root, ...match[0].slice(1).map(decodeURIComponent));
    return;
  }
  const main = shell(path);
  if (!match) {
    main.append(h("h1", {}, "Not found"), h("p", {}, "No page at this address."));
    return;
  }
  try {
    await match[1](main, ...match[0].slice(1).map(decodeURIComponent));
  } catch (error) {
    main.append(errorBox(error));
  }
  const heading = main.querySelector("h1");
  if (heading) document.title = `${heading.textContent} · Portway`;
}

window.addEventListener("hashchange", route);
route();
