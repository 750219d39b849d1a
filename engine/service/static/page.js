// The paste-a-claim page: load an example or a file, POST it to /v1/adjudicate, show each
// line's decision, primary reason, because list, remedies and folded proof. No framework;
// every value from the claim or the answer goes in as text (never as HTML).
"use strict";

const $ = (id) => document.getElementById(id);
let config = { examples: [], reference: null, code_pages: [] };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v; else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function ruleLink(id) {
  const href = config.reference ? `${config.reference}rules/${encodeURIComponent(id)}.html`
                                : `/v1/rules/${encodeURIComponent(id)}`;
  return el("a", { href, class: "rule" }, id);
}

function codeLink(code) {
  let href = `/v1/codes/${encodeURIComponent(code)}`;
  if (config.reference) {
    href = config.code_pages.includes(code) ? `${config.reference}codes/${encodeURIComponent(code)}.html`
                                            : `${config.reference}codes/lookup.html#${encodeURIComponent(code)}`;
  }
  return el("a", { href, class: "code" }, code);
}

function mediaType(text) {
  const t = text.replace(/^\uFEFF/, "").trimStart();
  if (t.startsWith("ISA")) return "application/edi-x12";
  try {
    const data = JSON.parse(t);
    if (data && data.resourceType === "Claim") return "application/fhir+json";
  } catch (e) { /* not JSON: the server names the problem */ }
  return "application/json";
}

function denialCodes(r) {
  const codes = [];
  if (r.group || r.carc) codes.push(`${r.group || "?"}-${r.carc || "?"}`);
  for (const rarc of r.rarc || []) codes.push(rarc);
  if (!codes.length) return null;
  return el("span", { class: "codes", "aria-label": "denial codes" }, codes.map((c) => el("span", {}, c)));
}

function inForce(r) { return !r.overridden_by; }

// The line's primary reason: the answer's `primary` when it has one, else the first deny in force.
function primaryOf(line) {
  const reasons = line.reasons || [];
  const p = line.primary;
  if (p) {
    const id = typeof p === "string" ? p : p.rule;
    const match = reasons.find((r) => r.rule === id);
    return typeof p === "string" ? match || { rule: p } : { ...(match || {}), ...p };
  }
  return reasons.find((r) => r.severity === "deny" && inForce(r)) || reasons.find((r) => inForce(r)) || null;
}

function becauseList(items) {
  if (!Array.isArray(items) || !items.length) return null;
  return el("ul", { class: "because" }, items.map((b) =>
    el("li", {}, typeof b === "string" ? b : b.text || b.message || b.reason || JSON.stringify(b))));
}

function sourceText(src) {
  if (!src) return "";
  if (src.claim_field) return `← ${src.claim_field}`;
  if (src.file) return `← ${src.file}` + (src.row !== undefined ? ` row ${src.row}` : `:${src.line}`);
  return "← " + Object.entries(src).map(([k, v]) => `${k} ${v}`).join(", ");
}

function proofNode(node) {
  const label = [
    el("span", { class: node.holds === false ? "fails" : "holds" }, node.holds === false ? "✗ " : "✓ ", node.fact),
    node.rule ? [" ", ruleLink(node.rule)] : null,
    el("span", { class: "kind" }, node.kind),
    node.source ? el("span", { class: "src" }, sourceText(node.source)) : null,
    node.note ? el("span", { class: "src" }, node.note) : null,
  ];
  if (!node.children || !node.children.length) return el("li", {}, label);
  return el("li", {}, el("details", {}, el("summary", {}, label),
                         el("ul", {}, node.children.map(proofNode))));
}

function proofBlock(reason) {
  if (!reason.proof || !reason.proof.fact) return null;
  return el("details", { class: "proof" }, el("summary", {}, `Proof for ${reason.rule}`),
            el("ul", {}, proofNode(reason.proof)));
}

function remediesBlock(reason) {
  const rs = reason.remedies || [];
  const blocked = reason.blocked_options || [];
  if (!rs.length && !blocked.length) return null;
  return el("div", {},
    rs.length ? [el("h4", {}, "What would make it pay"),
                 el("ul", { class: "remedies" }, rs.map((m) => el("li", {}, m.change || JSON.stringify(m.action))))] : null,
    blocked.length ? el("details", {}, el("summary", {}, `${blocked.length} change(s) that would not help`),
      el("ul", { class: "remedies" }, blocked.map((b) => el("li", {}, b.change || "",
        b.blocked_by ? [" — still denied by ", ...b.blocked_by.flatMap((id, i) => [i ? ", " : "", ruleLink(id)])] : null))))
      : null);
}

function lineCard(line) {
  const deny = line.decision === "deny";
  const primary = primaryOf(line);
  const others = (line.reasons || []).filter((r) => !primary || r.rule !== primary.rule);
  const because = line.because || (primary && primary.because);
  return el("article", { class: `line ${deny ? "deny" : "pay"}`, "data-line": line.line, "aria-label": `Line ${line.line}` },
    el("h3", {}, `Line ${line.line}`, codeLink(line.code), el("span", { class: "decision" }, deny ? "Deny" : "Pay")),
    primary ? el("div", { class: "primary" },
      el("div", { class: "label" }, deny ? "Primary reason" : "Note"),
      el("div", { class: "title" }, primary.title || primary.rule, " ", primary.rule ? ruleLink(primary.rule) : null,
         denialCodes(primary)),
      primary.message ? el("p", { class: "message" }, primary.message) : null,
      becauseList(because)) : el("p", { class: "no-reasons" }, "No rule denies this line."),
    others.length ? [el("h4", {}, "Other findings"), el("ul", { class: "reasons" }, others.map((r) =>
      el("li", { class: inForce(r) ? "" : "set-aside" },
         ruleLink(r.rule), ": ", r.message || r.title, " ", denialCodes(r),
         r.severity === "warn" ? [" ", el("span", { class: "warn-tag" }, "warning")] : null,
         r.overridden_by ? [" (set aside by ", ruleLink(r.overridden_by), ")"] : null)))] : null,
    (line.reasons || []).filter(inForce).map(remediesBlock),
    (line.reasons || []).map(proofBlock));
}

function showProblem(p, status) {
  const box = $("error");
  box.replaceChildren(
    el("h3", {}, p.title || `Error ${status}`),
    el("p", {}, p.detail || ""),
    p.problems && p.problems.length ? el("ul", {}, p.problems.map((x) => el("li", {}, el("code", {}, x.field), ": ", x.message))) : null,
    p.suggestions && p.suggestions.length ? el("p", {}, "Did you mean: ", p.suggestions.join(", ")) : null);
  box.hidden = false;
}

function showResult(data) {
  const denied = data.lines.filter((l) => l.decision === "deny").length;
  $("status").textContent = `${data.lines.length} line(s): ${denied} denied, ${data.lines.length - denied} paid.`;
  $("results").replaceChildren(
    el("div", { class: "claim-head" }, el("span", {}, "Claim ", el("strong", {}, data.claim)),
       el("span", {}, "KB ", el("strong", {}, data.kb))),
    ...data.lines.map(lineCard));
}

async function check(event) {
  event.preventDefault();
  const text = $("claim").value;
  $("error").hidden = true;
  $("results").replaceChildren();
  if (!text.trim()) { $("status").textContent = "Paste a claim first."; return; }
  const params = new URLSearchParams({ proofs: $("proofs").checked, remedies: $("remedies").checked });
  $("submit").disabled = true;
  $("status").textContent = "Checking…";
  try {
    const resp = await fetch(`/v1/adjudicate?${params}`, {
      method: "POST", headers: { "Content-Type": mediaType(text), Accept: "application/json" }, body: text });
    const data = await resp.json();
    if (!resp.ok) { showProblem(data, resp.status); $("status").textContent = "The claim could not be checked."; return; }
    showResult(data);
    // kept for this tab: following a rule or code link and coming back shows the answer again
    sessionStorage.setItem("policykb.last", JSON.stringify({ text, data }));
    // one column (a narrow window, or zoomed in): bring the answer into view
    if (window.matchMedia("(max-width: 60rem)").matches) $("output-heading").scrollIntoView();
  } catch (e) {
    showProblem({ title: "No answer", detail: "the service did not answer; is `policykb serve` still running?" }, 0);
    $("status").textContent = "";
  } finally {
    $("submit").disabled = false;
  }
}

async function loadExample() {
  const name = $("example").value;
  if (!name) return;
  const resp = await fetch(`/ui/examples/${encodeURIComponent(name)}`);
  $("claim").value = await resp.text();
  $("status").textContent = `Loaded ${name}. Check it, or edit it first.`;
}

function loadFile() {
  const file = $("upload").files[0];
  if (!file) return;
  file.text().then((t) => { $("claim").value = t; $("status").textContent = `Loaded ${file.name}.`; });
}

async function start() {
  try {
    config = await (await fetch("/ui/config")).json();
  } catch (e) { /* the page still works without examples and links */ }
  for (const name of config.examples || []) $("example").append(el("option", { value: name }, name.replace(/\.json$/, "")));
  if (config.reference) { $("reference-link").href = config.reference; $("reference-link").hidden = false; }
  try {
    const last = JSON.parse(sessionStorage.getItem("policykb.last") || "null");
    if (last && last.data && Array.isArray(last.data.lines)) { $("claim").value = last.text; showResult(last.data); }
  } catch (e) { sessionStorage.removeItem("policykb.last"); }
  $("example").addEventListener("change", loadExample);
  $("upload").addEventListener("change", loadFile);
  $("claim-form").addEventListener("submit", check);
}

start();
