// The compare page: several runs on the same charts, and the params that differ.
"use strict";
(() => {
  const { el, api, fmt, status, runLink, nav, fail, section, kvTable, lineChart } = coralx;
  nav("Runs");
  const main = document.getElementById("main");
  const ids = (new URLSearchParams(location.search).get("ids") || "").split(",").filter(Boolean);

  async function load() {
    let cmp;
    try { cmp = await api(`/api/compare?ids=${ids.map(encodeURIComponent).join(",")}`); } catch (err) { fail(main, err); return; }
    const runs = cmp.runs;
    const label = (r) => `${r.name} (${r.id.slice(-6)})`;
    const differ = Object.entries(cmp.params_differ);
    const table = el("table", { id: "differing-params" }, el("thead", {}, el("tr", {}, el("th", { text: "param" }), runs.map((r) => el("th", {}, runLink(r.id, label(r)))))),
      el("tbody", {}, differ.map(([key, values]) => el("tr", {}, el("th", { text: key }), values.map((v) => el("td", { text: fmt(v) }))))));
    const grid = el("div", { class: "charts", id: "charts" });
    main.replaceChildren(el("h1", { text: `Compare ${runs.length} runs` }),
      section("Runs", el("table", {}, el("tbody", {}, runs.map((r) => el("tr", {}, el("td", {}, runLink(r.id, label(r))), el("td", {}, status(r.status, r.stale)),
        el("td", { text: r.tags.join(", ") })))))),
      section("Params that differ", differ.length ? table : el("p", { class: "muted", text: "none: all runs have the same params" })),
      section("Params in common", kvTable(cmp.params_same)),
      section("Metrics", grid));
    for (const metric of cmp.metrics) {
      const traces = [];
      for (const r of runs) {
        if (!(metric in (r.metrics || {}))) continue;
        const d = await api(`/api/runs/${encodeURIComponent(r.id)}/metric?name=${encodeURIComponent(metric)}&points=1500`);
        traces.push({ name: label(r), x: d.steps, y: d.values });
      }
      lineChart(grid, metric, traces);
    }
    document.body.dataset.loaded = "true";
  }
  load();
})();
