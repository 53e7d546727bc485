// The runs page: a server-side filtered, sorted and paged table of every experiment.
"use strict";
(() => {
  const { el, api, fmt, duration, time, status, runLink, nav, fail } = coralx;
  nav("Runs");
  const main = document.getElementById("main");
  const params = new URLSearchParams(location.search);
  const state = {
    name: params.get("name") || "", tag: params.get("tag") || "", status: params.get("status") || "",
    param: params.get("param") || "", metric: params.get("metric") || "", sweep: params.get("sweep") || "",
    where: params.get("where") || "",
    sort: params.get("sort") || "created_at", order: params.get("order") || "desc",
    offset: Number(params.get("offset") || 0), limit: Number(params.get("limit") || 50),
  };
  const selected = new Set();

  const input = (key, placeholder) => {
    const box = el("input", { name: key, placeholder, value: state[key] });
    box.addEventListener("change", () => { state[key] = box.value.trim(); state.offset = 0; load(); });
    return box;
  };
  const tagSelect = el("select", { name: "tag" }, el("option", { value: "" }, "any tag"));
  tagSelect.addEventListener("change", () => { state.tag = tagSelect.value; state.offset = 0; load(); });
  // The statuses come from the server (the one list), with the page's counts.
  const statusSelect = el("select", { name: "status" }, el("option", { value: "" }, "any status"));
  statusSelect.addEventListener("change", () => { state.status = statusSelect.value; state.offset = 0; load(); });
  const compareButton = el("button", { id: "compare", disabled: true, onclick: () => {
    location.href = `/compare?ids=${[...selected].map(encodeURIComponent).join(",")}`;
  } }, "Compare selected");
  const summary = el("span", { class: "muted", id: "summary" });
  const table = el("table", { class: "runs", id: "runs-table" });
  const prev = el("button", { onclick: () => { state.offset = Math.max(0, state.offset - state.limit); load(); } }, "← Previous");
  const next = el("button", { onclick: () => { state.offset += state.limit; load(); } }, "Next →");
  const pageInfo = el("span", { class: "muted" });
  // The filter language of `coralx exp list --where` (docs/cli.md, "Filters").
  const whereBox = el("input", { name: "where", id: "where", size: 60, value: state.where,
    placeholder: "params.lr < 1e-3 and metrics.val_loss.min <= 0.3 and tags.bert" });
  whereBox.addEventListener("change", () => { state.where = whereBox.value.trim(); state.offset = 0; load(); });
  const whereError = el("pre", { class: "error", id: "where-error", hidden: true });

  main.replaceChildren(
    el("h1", { text: "Runs" }),
    el("div", { class: "filters" }, el("label", {}, "filter", whereBox)),
    whereError,
    el("div", { class: "filters" },
      el("label", {}, "name (glob)", input("name", "bert-*")),
      el("label", {}, "tag", tagSelect),
      el("label", {}, "status", statusSelect),
      el("label", {}, "param", input("param", "lr=0.01")),
      el("label", {}, "metric columns", input("metric", "loss,accuracy")),
      compareButton, summary),
    el("div", { class: "card", style: "padding:0;overflow:auto;max-height:75vh" }, table),
    el("div", { class: "pager" }, prev, pageInfo, next));

  // Which way a metric is better: the server's guess from its name (the one rule).
  let modes = {};
  const best = (metric) => modes[metric] || "min";

  const FIXED = new Set(["name", "status", "tags", "created", "duration"]);

  function header(label, column) {
    const sorted = state.sort === column;
    return el("th", {
      class: sorted ? `sorted ${state.order}` : null, dataset: { column },
      onclick: () => {
        state.order = sorted && state.order === "desc" ? "asc" : "desc";
        state.sort = column; state.offset = 0; load();
      },
    }, label);
  }

  function render(page) {
    modes = page.columns.modes || {};
    const paramCols = page.columns.params.slice(0, 8);
    const metricCols = page.columns.metrics.slice(0, 4);
    const head = el("tr", {}, el("th", {}, ""), header("name", "name"), header("status", "status"),
      el("th", {}, "tags"), header("created", "created_at"), header("duration", "duration"),
      // A param named like a column of its own is headed params.<name>: no two headers alike.
      paramCols.map((p) => header(FIXED.has(p) ? `params.${p}` : p, `params.${p}`)),
      metricCols.map((m) => [header(`${m} (last)`, `metrics.${m}.last`), header(`${m} (${best(m)})`, `metrics.${m}.${best(m)}`)]));
    const body = page.rows.map((row) => {
      const box = el("input", { type: "checkbox", "aria-label": `select ${row.name}` });
      box.checked = selected.has(row.id);
      box.addEventListener("change", () => {
        if (box.checked) selected.add(row.id); else selected.delete(row.id);
        compareButton.disabled = selected.size < 1;
        compareButton.textContent = `Compare selected (${selected.size})`;
      });
      const m = row.metrics || {};
      return el("tr", { dataset: { id: row.id } }, el("td", {}, box),
        el("td", { class: "name" }, runLink(row.id, row.name)),
        el("td", {}, status(row.status, row.stale)),
        el("td", {}, row.tags.map((t) => el("span", { class: "tag", text: t }))),
        el("td", { text: time(row.created_at) }), el("td", { text: duration(row.duration) }),
        paramCols.map((p) => el("td", { text: fmt(row.params[p]) })),
        metricCols.map((c) => ["last", best(c)].map((s) => el("td", { class: "num", text: fmt((m[c] || {})[s]) }))));
    });
    table.replaceChildren(el("thead", {}, head), el("tbody", {}, body));
    const tags = new Set(page.tags);
    if (state.tag) tags.add(state.tag);
    tagSelect.replaceChildren(el("option", { value: "" }, "any tag"),
      ...[...tags].sort().map((t) => el("option", { value: t, selected: t === state.tag }, t)));
    statusSelect.replaceChildren(el("option", { value: "" }, "any status"),
      ...Object.keys(page.statuses).map((s) => el("option", { value: s, selected: s === state.status }, s)));
    const counts = Object.entries(page.statuses).filter(([, n]) => n).map(([s, n]) => `${n} ${s}`).join(", ");
    summary.textContent = `${page.total} of ${page.all} runs${counts ? ` (${counts})` : ""}`;
    const last = Math.min(page.offset + page.limit, page.total);
    pageInfo.textContent = page.total ? `${page.offset + 1}–${last} of ${page.total}` : "no runs match";
    prev.disabled = page.offset === 0;
    next.disabled = last >= page.total;
  }

  async function load() {
    const q = new URLSearchParams();
    for (const [key, value] of Object.entries(state)) {
      if (value !== "" && !(key === "offset" && value === 0) && !(key === "limit" && value === 50)) q.set(key, value);
    }
    history.replaceState(null, "", q.toString() ? `/?${q}` : "/");
    try {
      const page = await api(`/api/runs?${q}`);
      whereError.hidden = true;
      render(page);
      document.body.dataset.loaded = "true";
    } catch (err) {
      // A filter that does not parse: say where, keep the last table.
      whereError.textContent = String(err.message || err);
      whereError.hidden = false;
      document.body.dataset.loaded = "true";
    }
  }
  load();
})();
