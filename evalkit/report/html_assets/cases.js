// The case browser of tradeoff.html: filters over the embedded cases, one page of rows at a time.
// Row: [suite, id, group, cluster, question, gold, prompt prefix index, prompt rest, cells per variant];
// cell: [status, passed (1/0/null), outcome, extracted answer, raw output, reason].
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("case-data").textContent);
  const PAGE = 50;
  const $ = (id) => document.getElementById(id);
  const f = { suite: $("f-suite"), variant: $("f-variant"), group: $("f-group"), cluster: $("f-cluster"),
              outcome: $("f-outcome"), flip: $("f-flip"), text: $("f-text") };
  const V = data.variants, baseIndex = V.indexOf(data.base);
  let matches = [], page = 0;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    children.forEach((c) => node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c))));
    return node;
  }
  function options(select, values, allLabel) {
    const kept = select.value;
    select.replaceChildren(...(allLabel ? [el("option", { value: "" }, allLabel)] : []),
                           ...values.map((v) => el("option", { value: v }, v)));
    if ([...select.options].some((o) => o.value === kept)) select.value = kept;
  }
  const distinct = (values) => [...new Set(values.filter((v) => v != null))].sort();
  const inSuite = () => data.rows.filter((r) => !f.suite.value || r[0] === f.suite.value);

  function refreshChoices() {
    const rows = inSuite(), vi = V.indexOf(f.variant.value);
    options(f.group, distinct(rows.map((r) => r[2])), "all");
    options(f.cluster, distinct(rows.map((r) => r[3])), "all");
    options(f.outcome, distinct(rows.map((r) => r[8][vi] && (r[8][vi][2] || r[8][vi][0]))), "all");
    f.flip.disabled = vi === baseIndex || baseIndex < 0;
  }

  function flipOf(row, vi) {
    const b = row[8][baseIndex], a = row[8][vi];
    if (!b || !a || b[1] == null || a[1] == null) return null;
    return b[1] === a[1] ? "same" : (b[1] ? "right_to_wrong" : "wrong_to_right");
  }

  function filter() {
    const vi = V.indexOf(f.variant.value), text = f.text.value.trim().toLowerCase();
    matches = inSuite().filter((r) => {
      const cell = r[8][vi];
      if (f.group.value && r[2] !== f.group.value) return false;
      if (f.cluster.value && r[3] !== f.cluster.value) return false;
      if (f.outcome.value && !(cell && (cell[2] || cell[0]) === f.outcome.value)) return false;
      if (f.flip.value && !f.flip.disabled) {
        const flip = flipOf(r, vi);
        if (f.flip.value === "flipped" ? !(flip === "right_to_wrong" || flip === "wrong_to_right") : flip !== f.flip.value) return false;
      }
      if (text && ![r[1], r[4], cell && cell[3]].some((s) => s && s.toLowerCase().includes(text))) return false;
      return true;
    });
    page = 0;
    render();
  }

  function answer(cell) {
    if (!cell) return el("span", { class: "other" }, "not run");
    const cls = cell[1] === 1 ? "pass" : cell[1] === 0 ? "fail" : "other";
    return el("span", {}, el("span", { class: cls }, cell[2] || cell[0]), " ", cell[3] || "");
  }

  function detail(row) {
    const prompt = row[7] == null ? "(no prompt recorded: this variant's results came from a baseline file)"
                                  : data.prefixes[row[6]] + row[7];
    const sides = V.map((v, i) => {
      const c = row[8][i];
      return el("div", {}, el("strong", {}, v), c ? el("div", {}, answer(c)) : "",
                c && c[4] != null ? el("pre", {}, c[4]) : "", c ? el("div", { class: "reason" }, c[5] || "") : "");
    });
    const side = el("div", { class: "side", style: `grid-template-columns: repeat(${V.length}, 1fr)` }, ...sides);
    return el("tr", { class: "detail" }, el("td", { colspan: 6 + V.length },
              el("div", {}, el("strong", {}, "prompt"), el("pre", { class: "prompt" }, prompt)),
              el("div", {}, el("strong", {}, "gold: "), row[5] || ""), side));
  }

  function render() {
    const body = $("case-table").tBodies[0];
    const shown = matches.slice(page * PAGE, (page + 1) * PAGE);
    body.replaceChildren(...shown.map((r) => {
      const tr = el("tr", { class: "case", "data-id": r[1] }, el("td", {}, r[0]), el("td", {}, r[1]), el("td", {}, r[2]),
                    el("td", {}, r[3]), el("td", {}, r[4] || ""), el("td", {}, r[5] || ""),
                    ...r[8].map((c) => el("td", { class: "variant" }, answer(c))));
      tr.addEventListener("click", () => {
        const next = tr.nextElementSibling;
        if (next && next.classList.contains("detail")) next.remove(); else tr.after(detail(r));
      });
      return tr;
    }));
    const pages = Math.max(1, Math.ceil(matches.length / PAGE));
    $("count").textContent = `${matches.length} of ${data.rows.length} examples match`;
    $("page").textContent = `page ${page + 1} of ${pages}`;
    $("prev").disabled = page === 0;
    $("next").disabled = page + 1 >= pages;
  }

  $("case-table").tHead.append(el("tr", {}, ...["suite", "id", "group", "cluster", "question", "gold", ...V].map((h) => el("th", {}, h))));
  options(f.suite, Object.keys(data.suites), "all");
  options(f.variant, V, null);
  if (V.length > 1) f.variant.value = V.find((v) => v !== data.base);
  f.suite.addEventListener("change", () => { refreshChoices(); filter(); });
  f.variant.addEventListener("change", () => { refreshChoices(); filter(); });
  [f.group, f.cluster, f.outcome, f.flip].forEach((s) => s.addEventListener("change", filter));
  f.text.addEventListener("input", filter);
  $("prev").addEventListener("click", () => { page -= 1; render(); });
  $("next").addEventListener("click", () => { page += 1; render(); });
  document.querySelectorAll("a[data-flips]").forEach((a) => a.addEventListener("click", () => {
    const [suite, adapter] = a.dataset.flips.split("|");
    f.suite.value = suite; f.variant.value = adapter; refreshChoices();
    f.group.value = f.cluster.value = f.outcome.value = f.text.value = ""; f.flip.value = "flipped";
    filter();
  }));
  refreshChoices();
  filter();
  document.body.dataset.ready = String(Math.round(performance.now()));
})();
