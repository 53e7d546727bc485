// The sweeps list.
"use strict";
(() => {
  const { el, api, nav, fail, time } = coralx;
  nav("Sweeps");
  const main = document.getElementById("main");
  api("/api/sweeps").then(({ sweeps }) => {
    const rows = sweeps.map((s) => el("tr", {},
      el("td", {}, el("a", { href: `/sweeps/${encodeURIComponent(s.sweep_id)}` }, s.name || s.sweep_id)),
      el("td", { class: "mono", text: s.sweep_id }), el("td", { text: s.runs }),
      el("td", { text: Object.entries(s.statuses).map(([k, v]) => `${v} ${k}`).join(", ") }),
      el("td", { text: s.created ? time(new Date(s.created * 1000).toISOString()) : "" })));
    main.replaceChildren(el("h1", { text: "Sweeps" }), sweeps.length
      ? el("div", { class: "card" }, el("table", { id: "sweeps" }, el("thead", {}, el("tr", {}, ["name", "id", "runs", "status", "started"].map((h) => el("th", { text: h })))), el("tbody", {}, rows)))
      : el("p", { class: "muted", text: "No sweeps in this store yet." }));
    document.body.dataset.loaded = "true";
  }).catch((err) => fail(main, err));
})();
