// The run page: everything one experiment recorded, with charts that follow a running run.
"use strict";
(() => {
  const { el, api, fmt, duration, time, status, runLink, nav, fail, section, kvTable, lineChart } = coralx;
  nav("Runs");
  const main = document.getElementById("main");
  const runId = decodeURIComponent(location.pathname.split("/")[2] || "");
  const base = `/api/runs/${encodeURIComponent(runId)}`;
  const charts = new Map(); // metric -> {chart, count}
  let chartGrid;
  let systemGrid; // system/... metrics (CPU, memory, GPUs) get a section of their own
  const isSystem = (name) => name.startsWith("system/");

  const artifactUrl = (blob, download) => `${base}/artifacts/${blob}${download ? "?download=1" : ""}`;
  const metricUrl = (name, ext) => `${base}/metric${ext}?name=${encodeURIComponent(name)}`;

  function header(run) {
    const bits = [el("h1", {}, run.name, " ", status(run.status, run.stale))];
    if (run.error_message || run.error_detail) {
      bits.push(el("div", { class: "error", id: "error" }, run.error_message || "",
        run.error_detail ? el("pre", { text: run.error_detail }) : null));
    }
    return bits;
  }

  function overview(run) {
    const info = {
      id: run.experiment_id, description: run.description, created: time(run.created_at),
      started: time(run.started_at), ended: time(run.ended_at), duration: duration(run.duration),
      host: run.host, pid: run.pid, "weight commit": run.commit_hash,
    };
    if (run.sweep) info.sweep = run.sweep.sweep_id;
    const card = section("Overview", kvTable(info));
    if (run.sweep) card.append(el("p", {}, el("a", { href: `/sweeps/${encodeURIComponent(run.sweep.sweep_id)}` }, "Open its sweep")));
    card.append(el("h2", { text: "Tags" }), el("div", { id: "tags" },
      (run.tags || []).length ? run.tags.map((t) => el("a", { class: "tag", href: `/?tag=${encodeURIComponent(t)}`, text: t })) : el("span", { class: "muted", text: "none" })));
    card.append(el("h2", { text: "Notes" }), run.notes ? el("pre", { id: "notes", text: run.notes }) : el("p", { class: "muted", text: "none" }));
    return card;
  }

  function lineage(tree) {
    const render = (node, current) => el("li", {},
      node.id === current ? el("span", { class: "current", text: `${node.name || node.id} (this run)` }) : runLink(node.id, node.name),
      " ", status(node.status),
      node.children && node.children.length ? el("ul", { class: "tree" }, node.children.map((c) => render(c, current))) : null);
    const parts = [];
    if (tree.ancestors.length) {
      parts.push(el("p", { class: "muted", text: "Parents (oldest first):" }),
        el("ol", { id: "ancestors" }, tree.ancestors.map((a) => el("li", {}, runLink(a.id, a.name), " ", status(a.status)))));
    }
    parts.push(el("ul", { class: "tree", id: "lineage" }, render(tree.tree, runId)));
    return section("Lineage", parts);
  }

  function weightCommits(run) {
    const commits = [...new Set([...(run.weight_commits || []), ...(run.commit_hash ? [run.commit_hash] : [])])];
    if (!commits.length) return section("Weight commits", el("p", { class: "muted", text: "This run committed no weights." }));
    return section("Weight commits", el("table", { id: "weight-commits" }, el("tbody", {}, commits.map((c) => el("tr", {},
      el("td", { class: "mono" }, el("a", { href: `/weights?commit=${c}` }, c.slice(0, 12))),
      el("td", {}, el("a", { href: `/api/weights/commits/${c}/export`, download: `${c.slice(0, 12)}.safetensors` }, "download safetensors")))))));
  }

  function artifacts(media) {
    if (!media.files.length) return null;
    return section("Artifacts", el("table", { id: "artifacts" }, el("tbody", {}, media.files.map((a) => el("tr", {},
      el("td", {}, el("a", { href: artifactUrl(a.blob, true) }, a.name)),
      el("td", { class: "muted", text: a.media_type }), el("td", { text: `${fmt(a.size)} bytes` }),
      el("td", { text: a.step === null || a.step === undefined ? "" : `step ${a.step}` }))))));
  }

  // A step slider over entries [{step, ...}] that calls show(entry) for the chosen one.
  function stepper(entries, show) {
    const slider = el("input", { type: "range", min: 0, max: entries.length - 1, value: entries.length - 1, class: "step-slider" });
    const label = el("span", { class: "step-label mono" });
    const pick = () => {
      const entry = entries[Number(slider.value)];
      label.textContent = `step ${entry.step ?? "–"} (${Number(slider.value) + 1}/${entries.length})`;
      show(entry);
    };
    slider.addEventListener("input", pick);
    return { node: el("div", { class: "stepper" }, slider, label), pick };
  }

  function texts(media) {
    const tags = Object.entries(media.texts);
    if (!tags.length) return null;
    return section("Text", tags.map(([tag, entries]) => {
      const out = el("pre", { class: "text-value" });
      const s = stepper(entries, async (entry) => {
        const response = await fetch(artifactUrl(entry.blob));
        out.textContent = await response.text();
      });
      const box = el("div", { class: "text-tag", dataset: { tag } }, el("h3", { text: tag }), s.node, out);
      s.pick();
      return box;
    }));
  }

  function figures(media) {
    const tags = Object.entries(media.figures);
    if (!tags.length) return null;
    return section("Figures", tags.map(([tag, entries]) => {
      const view = el("div", { class: "figure-view" });
      const s = stepper(entries, async (entry) => {
        const f = entry.formats;
        const plotly = f["application/vnd.plotly.v1+json"];
        view.dataset.step = entry.step ?? "";
        if (plotly) {
          const fig = await (await fetch(artifactUrl(plotly))).json();
          const div = el("div", { class: "plotly-figure" });
          view.replaceChildren(div);
          Plotly.newPlot(div, fig.data || [], fig.layout || {}, coralx.plotConfig({ staticPlot: !entry.interactive }));
          return;
        }
        const blob = entry.interactive && f["image/svg+xml"] ? f["image/svg+xml"] : (f["image/png"] || f["image/svg+xml"]);
        if (!blob) { view.replaceChildren(el("p", { class: "muted", text: "no format this viewer can show" })); return; }
        view.replaceChildren(el("img", { src: artifactUrl(blob), alt: `${tag} at step ${entry.step ?? ""}` }));
      });
      const box = el("div", { class: "figure", dataset: { tag } }, el("h3", { text: tag }), s.node, view);
      setTimeout(s.pick, 0);
      return box;
    }));
  }

  async function code() {
    const card = section("Code", el("p", { class: "muted", text: "loading…" }));
    try {
      const c = await api(`${base}/code`);
      if (!c.commit && !c.snapshot) {
        card.replaceChildren(el("h2", { text: "Code" }), el("p", { class: "muted", text: "No code recorded: the run did not start in a git work tree." }));
        return card;
      }
      const parts = [kvTable({ commit: c.commit, branch: c.branch, dirty: c.dirty, snapshot: c.snapshot })];
      if (c.files.length) {
        parts.push(el("h2", { text: `Snapshot (${c.files.length} files)` }), el("table", { id: "snapshot-files" }, el("tbody", {},
          c.files.map((f) => el("tr", {}, el("td", { class: "mono", text: f.path }), el("td", { text: f.change || "" }), el("td", { text: `${f.size} bytes` }))))));
      }
      if (c.diff) parts.push(el("h2", { text: "Diff against the commit" }), el("pre", { class: "diff", id: "diff", text: c.diff }));
      else if (c.snapshot && c.diff_base_found === false) parts.push(el("p", { class: "muted", text: "The commit is not in a git repository here, so no diff." }));
      card.replaceChildren(el("h2", { text: "Code" }), ...parts);
    } catch (err) { fail(card, err); }
    return card;
  }

  const gib = (bytes) => (bytes ? `${(bytes / 2 ** 30).toFixed(1)} GiB` : null);

  function gpuText(gpu) {
    if (!gpu) return "not recorded (torch was not imported)";
    if (!gpu.count) return `none visible to torch (CUDA ${gpu.cuda || "–"})`;
    return `${gpu.count} × ${(gpu.names || []).join(", ")} (CUDA ${gpu.cuda || "–"}, driver ${gpu.driver || "–"})`;
  }

  // What the run ran on: Python, machine, command line, packages (a requirements file).
  async function environment() {
    const card = section("Environment", el("p", { class: "muted", text: "loading…" }));
    card.id = "environment";
    try {
      const { environment: env } = await api(`${base}/environment`);
      if (!env) {
        card.replaceChildren(el("h2", { text: "Environment" }), el("p", { class: "muted", text: "This run recorded no environment." }));
        return card;
      }
      const py = env.python || {}, plat = env.platform || {}, machine = env.machine || {};
      const command = env.command || {}, git = env.git || {}, cx = env.coralx || {};
      const info = {
        python: `${py.version} (${py.implementation}) ${py.executable || ""}`,
        platform: `${plat.system} ${plat.release} ${plat.machine} ${plat.libc || ""}`,
        cpus: machine.cpu_count, memory: gib(machine.memory_bytes), host: env.host,
        command: (command.argv || []).join(" "), script: command.entry_script,
        "git root": git.root, cwd: git.cwd,
        coralx: `${cx.version}${cx.editable ? ` (editable, ${cx.url})` : ""}`, gpu: gpuText(env.gpu),
      };
      for (const [k, v] of Object.entries(env.env || {})) info[`$${k}`] = v;
      const packages = Object.entries(env.packages || {});
      const table = el("table", { id: "packages" }, el("tbody", {}, packages.map(([n, v]) => el("tr", {},
        el("td", { class: "mono", text: n }), el("td", { class: "mono", text: v })))));
      card.replaceChildren(el("h2", { text: "Environment" }), kvTable(info),
        el("details", {}, el("summary", { text: `${packages.length} packages` }), table),
        el("p", {}, el("a", { href: `${base}/requirements.txt`, download: "requirements.txt" }, "download requirements.txt")));
    } catch (err) { fail(card, err); }
    return card;
  }

  function drawMetric(name, data) {
    const traces = [{ name, x: data.steps, y: data.values }];
    let entry = charts.get(name);
    if (!entry) {
      if (isSystem(name) && !systemGrid.isConnected) systemAnchor.append(section("System metrics", systemGrid));
      const chart = lineChart(isSystem(name) ? systemGrid : chartGrid, name, traces);
      chart.head.append(el("span", { class: "links" },
        el("a", { href: metricUrl(name, ".csv") }, "CSV"), el("a", { href: metricUrl(name, ".json") }, "JSON")));
      chart.box.dataset.total = data.total;
      entry = { chart };
      charts.set(name, entry);
    } else {
      entry.chart.update(traces);
      entry.chart.box.dataset.total = data.total;
    }
    entry.count = data.total;
  }

  // A running run's journal grows before its record's summaries are rewritten, so while it
  // runs every chart is fetched again (the server answers from cache when nothing changed).
  async function refreshMetrics(run, live) {
    const summaries = run.metrics_summary || {};
    // Charts are created in name order; their data is fetched in parallel.
    const wanted = run.metric_names.filter((name) => {
      const known = charts.get(name);
      return !known || live || known.count !== (summaries[name] || {}).count;
    });
    const data = await Promise.all(wanted.map((name) => api(`${metricUrl(name, "")}&points=2000`)));
    wanted.forEach((name, i) => drawMetric(name, data[i]));
  }

  // Text and figure sections, replaced when a running run logs new ones.
  let mediaNodes = [];
  let artifactCount = 0;
  function renderMedia(run) {
    const fresh = [texts(run.media), figures(run.media)].filter(Boolean);
    if (mediaNodes.length) {
      mediaNodes[0].before(...fresh);
      mediaNodes.forEach((n) => n.remove());
    } else {
      codeAnchor.before(...fresh);
    }
    mediaNodes = fresh;
    artifactCount = (run.artifacts || []).length;
  }
  let codeAnchor;
  let systemAnchor;

  async function poll(statusNode) {
    try {
      const run = await api(base);
      statusNode.replaceChildren(status(run.status, run.stale));
      await refreshMetrics(run, true);
      if ((run.artifacts || []).length !== artifactCount) renderMedia(run);
      if (run.status === "running" || run.status === "pending") setTimeout(() => poll(statusNode), 1000);
    } catch (err) {
      setTimeout(() => poll(statusNode), 2000);
    }
  }

  async function load() {
    let run;
    try { run = await api(base); } catch (err) { fail(main, err); return; }
    document.title = `${run.name} · coralx`;
    chartGrid = el("div", { class: "charts", id: "charts" });
    systemGrid = el("div", { class: "charts", id: "system-charts" });
    systemAnchor = el("div", { id: "system" });
    const metricsCard = section("Metrics", chartGrid);
    const left = el("div", {}, overview(run), section("Params", kvTable(run.params)), lineage(run.lineage));
    const right = el("div", {}, weightCommits(run));
    const a = artifacts(run.media);
    if (a) right.append(a);
    codeAnchor = el("div", { id: "code" });
    const envAnchor = el("div", { id: "environment-holder" });
    main.replaceChildren(...header(run), el("div", { class: "grid2" }, left, right), metricsCard, systemAnchor, codeAnchor, envAnchor);
    renderMedia(run);
    // Charts first (they are what people open a run for), the code snapshot beside them.
    const codeCard = code().then((card) => codeAnchor.append(card));
    const envCard = environment().then((card) => envAnchor.append(card));
    await refreshMetrics(run);
    await codeCard;
    await envCard;
    document.body.dataset.loaded = "true";
    if (run.status === "running" || run.status === "pending") {
      const h1Status = main.querySelector("h1 .status");
      const holder = el("span", {});
      h1Status.replaceWith(holder);
      holder.append(h1Status);
      setTimeout(() => poll(holder), 1000);
    }
  }
  load();
})();
