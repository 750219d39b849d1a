/* PolicyKB reference site: sortable tables and the offline code lookup. No dependencies. */
(function () {
  "use strict";
  var base = new URL(".", document.currentScript.src);

  /* Sortable tables: click a heading; numbers sort as numbers, the rest as text. */
  function cellValue(row, i) {
    var c = row.cells[i];
    return c ? c.textContent.trim() : "";
  }
  function sortBy(table, i, th) {
    var body = table.tBodies[0];
    if (!body) return;
    var rows = Array.prototype.slice.call(body.rows);
    var numeric = rows.every(function (r) { var v = cellValue(r, i).replace(/,/g, ""); return v === "" || !isNaN(v); });
    var asc = th.getAttribute("aria-sort") !== "ascending";
    rows.sort(function (a, b) {
      var x = cellValue(a, i), y = cellValue(b, i);
      var d = numeric ? (parseFloat(x.replace(/,/g, "")) || 0) - (parseFloat(y.replace(/,/g, "")) || 0)
                      : x.localeCompare(y, undefined, { numeric: true });
      return asc ? d : -d;
    });
    Array.prototype.forEach.call(th.parentNode.cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    rows.forEach(function (r) { body.appendChild(r); });
  }
  function sortable() {
    document.querySelectorAll(".md-typeset table").forEach(function (table) {
      if (!table.tHead || table.dataset.pkbSort) return;
      table.dataset.pkbSort = "1";
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
        th.classList.add("pkb-sort");
        th.setAttribute("tabindex", "0");
        th.addEventListener("click", function () { sortBy(table, i, th); });
        th.addEventListener("keydown", function (e) { if (e.key === "Enter") sortBy(table, i, th); });
      });
    });
  }

  /* Code lookup: one JSON shard per first character, fetched on demand. */
  var shards = {};
  function shard(code) {
    var key = /[0-9A-Z]/.test(code[0]) ? code[0] : "_";
    if (!shards[key]) {
      shards[key] = fetch(new URL("lookup/" + key + ".json", base)).then(function (r) {
        if (!r.ok) { return {}; }
        return r.json();
      });
    }
    return shards[key];
  }
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  function partners(list) {
    var span = el("span");
    (list || []).forEach(function (p, k) {
      var parts = p.split(":");
      var a = el("a", parts[0]);
      a.href = "#" + parts[0];
      if (k) span.appendChild(document.createTextNode(", "));
      span.appendChild(a);
      span.appendChild(document.createTextNode(" (" + parts[1] + ")"));
    });
    if (!span.childNodes.length) span.textContent = "none";
    return span;
  }
  function show(code, e, out, shown) {
    out.textContent = "";
    if (!e) {
      out.appendChild(el("p", code + " is in none of the KB's code tables: a line with it is denied as an unknown code."));
      return;
    }
    var h = el("h2", code + (e.d ? ": " + e.d : ""));
    out.appendChild(h);
    var table = el("table"), body = el("tbody");
    function row(label, value) {
      var tr = el("tr");
      tr.appendChild(el("th", label));
      var td = el("td");
      if (typeof value === "string") td.textContent = value; else td.appendChild(value);
      tr.appendChild(td);
      body.appendChild(tr);
    }
    if (e.g) { var a = el("a", "the " + code + " page"); a.href = code + ".html"; row("Full page", a); }
    // the labels come with the shard ("~"): the KB's @docs annotations name them
    var head = (shown || {}), fields = head.f || [], f = e.f || [];
    fields.forEach(function (lab, k) { row(lab[0], f[k] || lab[1] || "none"); });
    if (head.e) {
      var c = e.c || [0, 0, 0, 0];
      row(head.e[0] + " as " + head.e[1], c[0] + " active, " + c[1] + " deleted");
      row(head.e[0] + " as " + head.e[2], c[2] + " active, " + c[3] + " deleted");
      row("First partners as " + head.e[1], partners(e.p1));
      row("First partners as " + head.e[2], partners(e.p2));
    }
    table.appendChild(body);
    out.appendChild(table);
  }
  function lookup() {
    var input = document.getElementById("pkb-code");
    var out = document.getElementById("pkb-lookup-result");
    if (!input || !out) return;
    function run() {
      var code = input.value.trim().toUpperCase();
      if (code.length !== 5) { out.textContent = code ? "A code has five characters." : ""; return; }
      shard(code).then(function (data) { show(code, data[code], out, data["~"]); },
                       function () { out.textContent = "The lookup index could not be loaded."; });
    }
    function fromHash() {
      var code = decodeURIComponent(location.hash.slice(1));
      if (code) { input.value = code; run(); }
    }
    input.addEventListener("input", run);
    window.addEventListener("hashchange", fromHash);
    fromHash();
  }

  function init() { sortable(); lookup(); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();
