// One sweep: its configurations laid out by the sweep's shape, coloured by the main metric.
"use strict";
(() => {
  const { el, api, fmt, status, runLink, nav, fail, section, kvTable } = coralx;
  nav("Sweeps");
  const main = document.getElementById("main");
  const sweepId = decodeURIComponent(location.pathname.split("/")[2] || "");
  const metric = new URLSearchParams(location.search).get("metric");

  function heatmap(s) {
    const [rows, cols] = s.grid_axes.map((i) => s.axes[i]);
    const [ri, ci] = s.grid_axes;
    const div = el("div", { id: "sweep-grid" });
    const text = s.grid.map((r) => r.map((v) => (v === null ? "" : fmt(v))));
    const colorTitle = s.repeats ? `${s.metric} (mean of ${s.repeats} repeats)` : s.metric;
    Plotly.newPlot(div, [{
      type: "heatmap", z: s.grid, x: cols.labels, y: rows.labels, text, texttemplate: "%{text}",
      colorscale: "Viridis", reversescale: s.mode === "min", hoverongaps: false, colorbar: { title: { text: colorTitle } },
      xgap: 2, ygap: 2,
    }], {
      margin: { l: 90, r: 20, t: 10, b: 60 }, height: Math.max(260, 42 * rows.labels.length + 90),
      xaxis: { title: { text: cols.name }, type: "category" }, yaxis: { title: { text: rows.name }, type: "category" },
    }, coralx.plotConfig());
    div.on && div.on("plotly_click", (ev) => {
      const p = ev.points[0];
      const cell = s.cells.find((c) => cols.labels[c.position[ci]] === p.x && rows.labels[c.position[ri]] === p.y);
      if (cell && cell.runs.length) location.href = `/runs/${cell.runs[0].id}`;
    });
    return div;
  }

  async function load() {
    let s;
    try { s = await api(`/api/sweeps/${encodeURIComponent(sweepId)}${metric ? `?metric=${encodeURIComponent(metric)}` : ""}`); } catch (err) { fail(main, err); return; }
    document.title = `${s.name} · coralx`;
    const counts = el("div", { id: "status-counts" }, Object.entries(s.statuses).map(([k, v]) => el("span", { class: "count" }, status(k), ` ${v} `)));
    const parts = [el("h1", { text: `Sweep ${s.name}` }),
      section("Summary", kvTable({ id: s.sweep_id, runs: s.runs, "main metric": s.metric, shape: s.axes.map((a) => `${a.name} (${a.labels.length})`).join(" × ") }), counts)];
    if (s.verdict !== null && s.verdict !== undefined) parts.push(section("Verdict", el("pre", { id: "verdict", text: typeof s.verdict === "string" ? s.verdict : JSON.stringify(s.verdict, null, 2) })));
    if (s.grid) parts.push(section(`${s.metric} by ${s.axes[s.grid_axes[0]].name} and ${s.axes[s.grid_axes[1]].name}`, heatmap(s)));
    parts.push(section("Configurations", el("table", { id: "cells" }, el("thead", {}, el("tr", {}, ["position", ...s.axes.map((a) => a.name), "runs", s.metric || "value"].map((h) => el("th", { text: h })))),
      el("tbody", {}, s.cells.map((c) => el("tr", {}, el("td", { class: "mono", text: c.position.join(",") }),
        s.axes.map((a, i) => el("td", { text: a.labels[c.position[i]] ?? "" })),
        el("td", {}, c.runs.map((r) => el("span", {}, runLink(r.id, r.label || r.id.slice(-6)), " ", status(r.status), " "))),
        el("td", { text: fmt(c.value), title: c.aggregate || "" },
          c.aggregate && c.aggregate !== "latest run" ? el("span", { class: "muted", text: ` (${c.aggregate})` }) : null)))))));
    if (s.runs_outside_plan) parts.push(el("p", { class: "muted", id: "outside-plan", text: `${s.runs_outside_plan} runs of configurations this sweep no longer plans (an earlier --set or config) are left out of the cells.` }));
    main.replaceChildren(...parts);
    document.body.dataset.loaded = "true";
  }
  load();
})();
