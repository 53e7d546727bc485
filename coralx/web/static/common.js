// Shared helpers of the coralx viewer. Every string that came from the store is put into the
// page with textContent (through el()), never parsed as HTML.
"use strict";

const coralx = (() => {
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = String(value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  async function api(path) {
    const response = await fetch(path, { headers: { Accept: "application/json" } });
    const body = await response.json().catch(() => ({ error: response.statusText }));
    if (!response.ok) {
      const err = new Error(body.error || response.statusText);
      err.status = response.status;
      throw err;
    }
    return body;
  }

  function fmt(value) {
    if (value === null || value === undefined) return "";
    if (typeof value === "number") {
      if (Number.isInteger(value)) return String(value);
      const abs = Math.abs(value);
      return abs !== 0 && (abs < 1e-3 || abs >= 1e6) ? value.toExponential(3) : value.toPrecision(5).replace(/\.?0+$/, "");
    }
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "";
    const s = Math.round(seconds);
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
    return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  }

  function time(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toLocaleString();
  }

  function status(name, stale) {
    const label = stale ? `${name} (stale)` : name;
    return el("span", { class: `status status-${name}`, text: label, title: stale ? "its lease ran out: the process is probably gone" : null });
  }

  function runLink(id, name) {
    return el("a", { href: `/runs/${encodeURIComponent(id)}`, class: "run-link" }, name || id.slice(0, 12));
  }

  function nav(active) {
    const links = [["/", "Runs"], ["/sweeps", "Sweeps"], ["/weights", "Weights"]];
    const bar = el("nav", { class: "top" }, el("a", { href: "/", class: "brand" }, "coralx"),
      links.map(([href, label]) => el("a", { href, class: label === active ? "active" : null }, label)));
    document.body.prepend(bar);
  }

  function fail(target, err) {
    target.replaceChildren(el("div", { class: "error", role: "alert" }, err.message || String(err)));
  }

  function section(title, ...children) {
    return el("section", { class: "card" }, el("h2", { text: title }), ...children);
  }

  function kvTable(obj) {
    const rows = Object.entries(obj || {}).map(([k, v]) => el("tr", {}, el("th", { text: k }), el("td", { text: fmt(v) })));
    return rows.length ? el("table", { class: "kv" }, el("tbody", {}, rows)) : el("p", { class: "muted", text: "none" });
  }

  // The viewer works offline: no button that would send a chart to a cloud service.
  const plotConfig = (extra) => ({ displaylogo: false, responsive: true, modeBarButtonsToRemove: ["sendChartToCloud", "sendDataToCloud"], ...extra });

  // One line chart: traces [{name, x, y}], a log-scale toggle, drawn with Plotly (offline copy).
  function lineChart(container, title, traces, { log = false } = {}) {
    const plot = el("div", { class: "plot", dataset: { metric: title } });
    const toggle = el("input", { type: "checkbox", class: "log-toggle" });
    toggle.checked = log;
    const head = el("div", { class: "chart-head" }, el("h3", { text: title }),
      el("label", { class: "log" }, toggle, " log scale"));
    const box = el("div", { class: "chart" }, head, plot);
    container.append(box);
    const layout = () => ({
      margin: { l: 55, r: 15, t: 10, b: 35 }, height: 260, showlegend: traces.length > 1,
      legend: { orientation: "h" }, xaxis: { title: { text: "step" } },
      yaxis: { type: toggle.checked ? "log" : "linear" },
    });
    const data = () => traces.map((t) => ({ type: "scatter", mode: "lines", name: t.name, x: t.x, y: t.y }));
    plot.dataset.scale = log ? "log" : "linear";
    Plotly.newPlot(plot, data(), layout(), plotConfig());
    toggle.addEventListener("change", () => {
      plot.dataset.scale = toggle.checked ? "log" : "linear";
      Plotly.relayout(plot, { "yaxis.type": plot.dataset.scale });
    });
    return {
      box, plot, head,
      update(newTraces) { traces = newTraces; Plotly.react(plot, data(), layout()); },
    };
  }

  return { plotConfig, el, api, fmt, duration, time, status, runLink, nav, fail, section, kvTable, lineChart };
})();
