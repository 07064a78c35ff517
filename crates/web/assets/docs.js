// The API reference at /docs: renders each REST service's OpenAPI 3.1
// document (/<service>/openapi.json) and the event catalogue, an AsyncAPI
// 3.0 document (/docs/asyncapi.json). Plain DOM, no library; every URL is
// relative, so nothing is fetched from another host.

const SERVICES = ["users", "products", "orders", "warehouse", "delivery",
  "delivery-pricing", "payment", "payment-3p"];

const main = document.getElementById("main");

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

async function load(url) {
  const response = await fetch(url, { headers: { accept: "application/json" } });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

// Follows a local "$ref" ("#/components/schemas/X") inside doc.
function resolve(doc, node) {
  let seen = 0;
  while (node && node.$ref && seen++ < 20) {
    const parts = node.$ref.replace(/^#\//, "").split("/")
      .map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
    node = parts.reduce((at, key) => (at ? at[key] : undefined), doc);
  }
  return node || {};
}

function refName(node) {
  return node && node.$ref ? node.$ref.split("/").pop() : null;
}

// A schema as a short TypeScript-like text: enough to write a request by hand.
function schemaText(doc, schema, indent = "", depth = 0) {
  if (!schema) return "any";
  const name = refName(schema);
  const s = resolve(doc, schema);
  if (depth > 6) return name || "…";
  if (s.const !== undefined) return JSON.stringify(s.const);
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(" | ");
  const variants = s.oneOf || s.anyOf;
  if (variants) return variants.map((v) => schemaText(doc, v, indent, depth + 1)).join(" | ");
  if (s.allOf) {
    return s.allOf.map((v) => schemaText(doc, v, indent, depth + 1)).join(" & ");
  }
  let type = Array.isArray(s.type) ? s.type.filter((t) => t !== "null") : [s.type];
  const nullable = Array.isArray(s.type) && s.type.includes("null");
  let text;
  if (type[0] === "array") {
    text = `${schemaText(doc, s.items, indent, depth + 1)}[]`;
  } else if (type[0] === "object" || s.properties) {
    const required = new Set(s.required || []);
    const props = Object.entries(s.properties || {});
    if (props.length === 0 && s.additionalProperties) {
      text = `{ [key: string]: ${schemaText(doc, s.additionalProperties, indent, depth + 1)} }`;
    } else if (props.length === 0) {
      text = "object";
    } else {
      const inner = indent + "  ";
      const lines = props.map(([key, value]) => {
        const v = resolve(doc, value);
        const note = value.description || v.description;
        const comment = note ? `  // ${note.split("\n")[0]}` : "";
        return `${inner}${key}${required.has(key) ? "" : "?"}: ${schemaText(doc, value, inner, depth + 1)}${comment}`;
      });
      text = `{\n${lines.join("\n")}\n${indent}}`;
    }
  } else {
    text = type[0] || "any";
    if (s.format) text += ` (${s.format})`;
    if (s.minimum !== undefined) text += ` ≥ ${s.minimum}`;
    if (s.pattern) text += ` /${s.pattern}/`;
  }
  return nullable ? `${text} | null` : text;
}

function schemaBlock(doc, schema) {
  return el("pre", { class: "mono schema" }, schemaText(doc, schema));
}

function bodySchema(content) {
  const json = content && (content["application/json"] || Object.values(content)[0]);
  return json ? json.schema : null;
}

function operationView(doc, path, method, op) {
  const security = (op.security || []).flatMap((r) => Object.keys(r));
  const schemes = (doc.components && doc.components.securitySchemes) || {};
  const section = el("section", { class: "operation", id: `${method}-${path}` },
    el("h3", {}, el("span", { class: `method ${method}` }, method.toUpperCase()), " ",
      el("code", {}, path)));
  if (op.summary) section.append(el("p", {}, op.summary));
  if (op.description && op.description !== op.summary) section.append(el("p", { class: "hint" }, op.description));
  section.append(el("p", {}, el("strong", {}, "Credential: "),
    security.length ? security.map((s) => `${s} (Authorization: Bearer …)`).join(" or ") : "none (public)"));
  for (const s of security) {
    if (schemes[s] && schemes[s].description) section.append(el("p", { class: "hint" }, schemes[s].description));
  }
  const params = (op.parameters || []).map((p) => resolve(doc, p));
  if (params.length) {
    section.append(el("h4", {}, "Parameters"), el("table", {},
      el("thead", {}, el("tr", {}, el("th", {}, "name"), el("th", {}, "in"), el("th", {}, "type"), el("th", {}, "description"))),
      el("tbody", {}, params.map((p) => el("tr", {},
        el("td", {}, el("code", {}, p.name + (p.required ? "" : "?"))), el("td", {}, p.in),
        el("td", {}, schemaText(doc, p.schema)), el("td", {}, p.description || ""))))));
  }
  if (op.requestBody) {
    section.append(el("h4", {}, "Request body (JSON)"), schemaBlock(doc, bodySchema(resolve(doc, op.requestBody).content)));
  }
  section.append(el("h4", {}, "Answers"));
  const list = el("dl", { class: "answers" });
  for (const [status, response] of Object.entries(op.responses || {})) {
    const r = resolve(doc, response);
    const schema = bodySchema(r.content);
    list.append(el("dt", {}, el("code", {}, status)),
      el("dd", {}, r.description || "", schema ? schemaBlock(doc, schema) : null));
  }
  section.append(list);
  return section;
}

async function apiView(service) {
  const doc = await load(`/${service}/openapi.json`);
  const view = el("div", {}, el("h1", {}, doc.info.title),
    el("p", {}, doc.info.description || ""),
    el("p", { class: "hint" }, `OpenAPI ${doc.openapi}: `, el("a", { href: `/${service}/openapi.json` }, `/${service}/openapi.json`)));
  const toc = el("ul", { class: "toc" });
  view.append(toc);
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const [method, op] of Object.entries(item)) {
      if (!["get", "put", "post", "delete", "patch"].includes(method)) continue;
      const section = operationView(doc, path, method, op);
      toc.append(el("li", {}, el("a", { href: `#/api/${service}/${method}-${path}` }, `${method.toUpperCase()} ${path}`)));
      view.append(section);
    }
  }
  return view;
}

async function eventsView() {
  const doc = await load("/docs/asyncapi.json");
  const view = el("div", {}, el("h1", {}, doc.info.title),
    el("p", {}, doc.info.description || ""),
    el("p", { class: "hint" }, `AsyncAPI ${doc.asyncapi}: `, el("a", { href: "/docs/asyncapi.json" }, "/docs/asyncapi.json")));
  for (const [name, channel] of Object.entries(doc.channels || {})) {
    const section = el("section", { class: "channel" }, el("h2", {}, el("code", {}, channel.address || name)));
    if (channel.description) section.append(el("p", {}, channel.description));
    for (const [messageName, ref] of Object.entries(channel.messages || {})) {
      const message = resolve(doc, ref);
      section.append(el("h3", {}, el("code", {}, message.name || messageName)),
        message.summary ? el("p", {}, message.summary) : null,
        message.description ? el("p", { class: "hint" }, message.description) : null,
        schemaBlock(doc, message.payload));
    }
    view.append(section);
  }
  return view;
}

function overview() {
  return el("div", {},
    el("h1", {}, "ecom documentation"),
    el("p", {}, "Shoppers and staff use the GraphQL API; each service also has REST routes under /<service>/. ",
      "Errors are JSON {\"message\": …} with a fitting status. createOrder takes an Idempotency-Key header: ",
      "the same key and request again returns the first order; the same key with another request is refused (IDEMPOTENCY_KEY_REUSED)."),
    el("h2", {}, "REST API reference (OpenAPI 3.1)"),
    el("ul", {}, SERVICES.map((s) => el("li", {}, el("a", { href: `#/api/${s}` }, s), " — ",
      el("a", { href: `/${s}/openapi.json` }, "openapi.json")))),
    el("h2", {}, "GraphQL"),
    el("p", {}, el("a", { href: "/graphql" }, "The GraphQL IDE"), " (GraphiQL, served from the binary: it works offline)."),
    el("h2", {}, "Events"),
    el("p", {}, el("a", { href: "#/events" }, "The event catalogue"), ": every event on the bus with its JSON Schema (",
      el("a", { href: "/docs/asyncapi.json" }, "AsyncAPI 3.0"), ")."));
}

async function route() {
  const hash = location.hash.replace(/^#/, "") || "/";
  let view;
  try {
    if (hash === "/events") {
      view = await eventsView();
    } else if (hash.startsWith("/api/")) {
      const [service, ...anchor] = hash.slice(5).split("/");
      if (!SERVICES.includes(service)) throw new Error(`no service '${service}'`);
      view = await apiView(service);
      main.replaceChildren(view);
      const target = anchor.length ? document.getElementById(anchor.join("/")) : null;
      if (target) target.scrollIntoView();
      return;
    } else {
      view = overview();
    }
  } catch (e) {
    view = el("div", { class: "alert", role: "alert" }, el("p", {}, `Could not load this part of the reference: ${e.message}.`),
      el("p", {}, "A service not run by this process serves its document where it runs."));
  }
  main.replaceChildren(view);
  main.focus();
}

window.addEventListener("hashchange", route);
route();
