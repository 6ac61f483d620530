// Sign-in, sign-out, the caller's own password and tokens, and users (admin).

import { add, h, api, clear, table, when, badge, button, section, errorBox, toast, session } from "../lib.js";
import { schemaForm, submitForm } from "../form.js";

let openapi = null;
export async function openapiDoc() {
  openapi = openapi || (await api("GET", "/openapi.json"));
  return openapi;
}

export async function signIn(root) {
  const user = h("input", { id: "username", name: "username", autocomplete: "username", required: true });
  const pass = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const status = h("div", { "aria-live": "assertive" });
  const form = h(
    "form",
    { class: "signin-card", onsubmit: submit },
    h("div", { class: "brand big" }, h("span", { class: "logo", "aria-hidden": "true" }, "◆"), "Portway"),
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "Manage API proxies, consumers and deployments."),
    status,
    h("div", { class: "field" }, h("label", { for: "username" }, "Username"), user),
    h("div", { class: "field" }, h("label", { for: "password" }, "Password"), pass),
    h("button", { type: "submit", class: "btn btn-primary btn-block" }, "Sign in"),
  );
  clear(root, h("main", { class: "signin" }, form));
  document.title = "Sign in · Portway";
  user.focus();
  async function submit(event) {
    event.preventDefault();
    clear(status);
    try {
      await api("POST", "/auth/login", { username: user.value, password: pass.value });
      session.me = await api("GET", "/me/permissions");
      location.hash = "#/";
    } catch (error) {
      status.append(errorBox(error));
      pass.select();
    }
  }
}

export async function signOut() {
  try {
    await api("POST", "/auth/logout");
  } finally {
    session.me = null;
    location.hash = "#/sign-in";
  }
}

export async function account(main) {
  const tokens = await api("GET", "/tokens");
  add(main, h("h1", {}, "Your account"), h("p", { class: "muted" }, `Signed in as ${session.me.username} (${session.me.role}).`));

  const current = h("input", { id: "pw-current", type: "password", autocomplete: "current-password", required: true });
  const next = h("input", { id: "pw-new", type: "password", autocomplete: "new-password", required: true, minlength: 12 });
  const pwStatus = h("div", { "aria-live": "polite" });
  add(main, 
    section(
      "Change password",
      h(
        "form",
        { class: "inline-form", onsubmit: async (e) => {
          e.preventDefault();
          clear(pwStatus);
          try {
            await api("PUT", "/me/password", { current_password: current.value, new_password: next.value });
            session.me = null;
            location.hash = "#/sign-in";
          } catch (error) {
            pwStatus.append(errorBox(error));
          }
        } },
        h("div", { class: "field" }, h("label", { for: "pw-current" }, "Current password"), current),
        h("div", { class: "field" }, h("label", { for: "pw-new" }, "New password (12+ characters)"), next),
        h("button", { type: "submit", class: "btn btn-primary" }, "Change password"),
        pwStatus,
        h("p", { class: "hint" }, "Changing the password ends every session and token of yours."),
      ),
    ),
  );

  const name = h("input", { id: "tok-name", required: true, maxlength: 100 });
  const confirm = h("input", { id: "tok-pw", type: "password", autocomplete: "current-password", required: true });
  const days = h("input", { id: "tok-days", type: "number", min: 1, value: 90 });
  const tokStatus = h("div", { "aria-live": "polite" });
  add(main, 
    section(
      "Personal access tokens",
      table(
        [
          { title: "Name", cell: (t) => t.name },
          { title: "Created", cell: (t) => when(t.created_at) },
          { title: "Expires", cell: (t) => when(t.expires_at) },
          { title: "State", cell: (t) => (t.active ? badge("active", "ok") : badge("revoked", "muted")) },
          { title: "", cell: (t) => (t.active ? button("Revoke", async () => { await api("DELETE", `/tokens/${t.id}`); toast("Token revoked"); location.reload(); }, "danger", { "aria-label": `Revoke token ${t.name}` }) : "") },
        ],
        tokens,
      ),
      h(
        "form",
        { class: "inline-form", onsubmit: async (e) => {
          e.preventDefault();
          clear(tokStatus);
          try {
            const made = await api("POST", "/tokens", { name: name.value, current_password: confirm.value, expires_in_days: Number(days.value) });
            tokStatus.append(h("div", { class: "alert alert-secret" }, h("strong", {}, "Copy this token now; it is shown once: "), h("code", { class: "secret" }, made.token)));
          } catch (error) {
            tokStatus.append(errorBox(error));
          }
        } },
        h("h3", {}, "New token"),
        h("div", { class: "field" }, h("label", { for: "tok-name" }, "Name"), name),
        h("div", { class: "field" }, h("label", { for: "tok-days" }, "Expires in days"), days),
        h("div", { class: "field" }, h("label", { for: "tok-pw" }, "Your password"), confirm),
        h("button", { type: "submit", class: "btn btn-primary" }, "Create token"),
        tokStatus,
      ),
    ),
  );
}

export async function users(main) {
  const [rows, doc] = await Promise.all([api("GET", "/users"), openapiDoc()]);
  add(main, h("h1", {}, "Users and roles"));
  add(main, 
    section(
      "Users",
      table(
        [
          { title: "Username", cell: (u) => u.username },
          { title: "Role", cell: (u) => badge(u.role) },
          { title: "State", cell: (u) => (u.disabled ? badge("disabled", "muted") : badge("enabled", "ok")) },
          { title: "Created", cell: (u) => when(u.created_at) },
          { title: "", cell: (u) => (u.username === session.me.username ? "" : button(u.disabled ? "Enable" : "Disable", async () => { await api("PATCH", `/users/${encodeURIComponent(u.username)}`, { disabled: !u.disabled }); location.reload(); }, "secondary", { "aria-label": `${u.disabled ? "Enable" : "Disable"} ${u.username}` })) },
        ],
        rows,
      ),
    ),
  );
  const form = schemaForm(doc.components.schemas.UserCreate, doc, {}, { skip: ["password"] });
  const shown = h("div", { "aria-live": "polite" });
  add(main, section("Add a user", shown, submitForm(form, "Create user", async (body) => {
    const made = await api("POST", "/users", body);
    clear(shown, h("div", { class: "alert alert-secret" }, h("strong", {}, `Password for ${made.username}, shown once: `), h("code", { class: "secret" }, made.password)));
  })));
}
