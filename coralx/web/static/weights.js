// The weights page: branches, tags, history; per commit its diff and stored vs raw bytes.
"use strict";
(() => {
  const { el, api, fmt, time, nav, fail, section, kvTable, runLink } = coralx;
  nav("Weights");
  const main = document.getElementById("main");
  const detail = el("div", { id: "commit-detail" });
  const bytes = (n) => (n === null || n === undefined ? "" : n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(2)} MiB`);

  async function show(sha) {
    history.replaceState(null, "", `/weights?commit=${encodeURIComponent(sha)}`);
    document.querySelectorAll(".commit-row").forEach((r) => r.classList.toggle("selected", r.dataset.commit === sha));
    detail.replaceChildren(el("p", { class: "muted", text: "loading…" }));
    try {
      const c = await api(`/api/weights/commits/${encodeURIComponent(sha)}`);
      const z = c.sizes || {};
      const sizes = kvTable({
        "raw (tensors as arrays)": bytes(z.raw_bytes),
        "stored (its chunks on disk)": `${bytes(z.stored_bytes)} (${fmt(100 * (z.stored_fraction || 0))}% of raw)`,
        chunks: z.chunks,
        "new in this commit": `${z.new_chunks} chunks, ${bytes(z.new_stored_bytes)} stored`,
      });
      detail.replaceChildren(section(`Commit ${sha.slice(0, 12)}`,
        kvTable({ message: c.message.trim(), author: c.author, time: time(c.timestamp), parents: c.parents.join(", "), "code commit": c.code_commit, "code branch": c.code_branch }),
        c.experiment_id ? el("p", {}, "Made by run ", runLink(c.experiment_id, c.experiment_id)) : null,
        el("p", {}, el("a", { href: `/api/weights/commits/${c.commit_hash}/export`, download: `${c.commit_hash.slice(0, 12)}.safetensors` }, "Download safetensors")),
        el("h2", { text: "Stored vs raw bytes" }), sizes,
        el("h2", { text: "Tensors against the parent" }),
        c.diff.length ? el("table", { id: "tensor-diff" }, el("thead", {}, el("tr", {}, ["tensor", "change", "max |change|", "fraction changed"].map((h) => el("th", { text: h })))),
          el("tbody", {}, c.diff.map((d) => el("tr", {}, el("td", { class: "mono", text: d.name }), el("td", { text: d.change }), el("td", { text: fmt(d.max_abs_change) }), el("td", { text: fmt(d.fraction_changed) })))))
          : el("p", { class: "muted", text: "no tensors" })));
    } catch (err) { fail(detail, err); }
  }

  api("/api/weights").then((w) => {
    const refList = (items) => items.length ? el("ul", {}, items.map((b) => el("li", {}, el("span", { class: "mono", text: b.name }), " → ",
      el("a", { href: "#", class: "mono", onclick: (e) => { e.preventDefault(); show(b.commit_hash); } }, b.commit_hash.slice(0, 12))))) : el("p", { class: "muted", text: "none" });
    const log = el("table", { id: "weight-log" }, el("thead", {}, el("tr", {}, ["commit", "message", "refs", "time"].map((h) => el("th", { text: h })))),
      el("tbody", {}, w.commits.map((c) => el("tr", { class: "commit-row", dataset: { commit: c.commit_hash }, onclick: () => show(c.commit_hash) },
        el("td", { class: "mono", text: c.commit_hash.slice(0, 12) }), el("td", { text: c.summary }),
        el("td", {}, c.refs.map((r) => el("span", { class: "tag", text: r }))), el("td", { text: time(c.timestamp) })))));
    main.replaceChildren(el("h1", { text: "Weights" }),
      el("div", { class: "grid2" }, section("Branches", refList(w.branches)), section("Tags", refList(w.tags))),
      el("div", { class: "grid2" }, section(`History${w.truncated ? " (newest commits)" : ""}`, log), detail));
    const wanted = new URLSearchParams(location.search).get("commit");
    if (wanted) show(wanted);
    document.body.dataset.loaded = "true";
  }).catch((err) => fail(main, err));
})();
