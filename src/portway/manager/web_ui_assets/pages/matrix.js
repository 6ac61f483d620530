// The network connection matrix (GET /matrix): the verdict of each security rule, the port opening
// checklist, an ASCII diagram, then zones, components and the flows of each table.

import { add, h, api, table, badge, section } from "../lib.js";

const CHECKLIST_KIND = { done: "ok", failed: "error", "no evidence": "warn", "needs a person": "muted" };

function ports(flow) {
  return flow.ports === "dynamic" ? "dynamic" : flow.ports.join(", ");
}

export async function page(main) {
  const matrix = await api("GET", "/matrix");
  const zoneTitle = Object.fromEntries(matrix.zones.map((z) => [z.id, z.title]));
  add(
    main,
    h("h1", {}, "Network matrix"),
    h("p", { class: "muted" }, "The connections this manager's settings call for (as ", h("code", {}, "portway matrix show"), " computes them); the workers, load balancer and network sections take their defaults. Off: a flow this installation does not use."),
    section(
      "Security rules",
      h("p", { class: "muted" }, "What ", h("code", {}, "portway matrix check"), " finds: each rule over the flows that are on."),
      table(
        [
          { title: "Rule", cell: (r) => [h("strong", {}, r.title), " ", h("code", {}, r.id)] },
          { title: "Verdict", cell: (r) => (r.verdict === "pass" ? badge("pass", "ok") : badge("fail", "error")) },
          { title: "Message", cell: (r) => (r.violations.length ? h("ul", {}, r.violations.map((v) => h("li", {}, v.message))) : "No flow breaks it.") },
        ],
        matrix.rules,
        "No rule.",
        "Security rules",
      ),
    ),
    section(
      "Port opening checklist",
      h("p", { class: "muted" }, "As ", h("code", {}, "portway matrix checklist"), " answers it without audit reports: pass ", h("code", {}, "portway audit --format json"), " reports to the CLI for the audit items."),
      table(
        [
          { title: "Item", cell: (i) => i.text },
          { title: "Status", cell: (i) => badge(i.status, CHECKLIST_KIND[i.status]) },
          { title: "Evidence", cell: (i) => i.evidence },
        ],
        matrix.checklist,
        "No item.",
        "Port opening checklist",
      ),
    ),
    section(
      "Diagram",
      h("pre", { class: "code diagram", tabindex: "0", role: "img", "aria-label": "Diagram of the flows" }, matrix.diagram),
    ),
    section(
      "Zones",
      table(
        [
          { title: "Zone", cell: (z) => z.title },
          { title: "Components", cell: (z) => matrix.components.filter((c) => c.zone === z.id).map((c) => c.name).join(", ") || "—" },
        ],
        matrix.zones,
        "No zone.",
        "Zones",
      ),
    ),
    section(
      "Components",
      table(
        [
          { title: "Component", cell: (c) => c.name },
          { title: "Zone", cell: (c) => zoneTitle[c.zone] || c.zone },
          { title: "Kind", cell: (c) => (c.portway ? badge("Portway", "ok") : badge("third party")) },
          { title: "Description", cell: (c) => c.description },
        ],
        matrix.components,
        "No component.",
        "Components",
      ),
    ),
    matrix.tables.map((t) =>
      section(
        t.title,
        table(
          [
            { title: "Flow", cell: (f) => h("code", {}, f.id) },
            { title: "Direction", cell: (f) => f.direction },
            { title: "Zones", cell: (f) => `${zoneTitle[f.source_zone]} → ${zoneTitle[f.destination_zone]}` },
            { title: "Ports", cell: ports },
            { title: "Protocol", cell: (f) => `${f.protocol} (${f.transports.join("/")})` },
            { title: "Required", cell: (f) => (f.required ? "required" : "optional") },
            { title: "State", cell: (f) => (f.enabled ? badge("on", "ok") : badge("off")) },
            { title: "Description", cell: (f) => f.description },
          ],
          matrix.flows.filter((f) => f.table === t.id),
          "No flow in this table.",
          `Flows: ${t.title}`,
        ),
      ),
    ),
  );
}
