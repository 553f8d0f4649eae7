// overnight dashboard: polls the read-only API (api/state: the run and its experiments) every 2 s and draws the run.
// Vanilla JS, no dependencies; every value from the ledger goes in as text, never as HTML.
"use strict";

(() => {
  const POLL_MS = 2000;
  const SVG_NS = "http://www.w3.org/2000/svg";
  // Failures: drawn along the x axis (they have no metric), in this order in the legend.
  const FAILURES = ["crash", "timeout", "no_metric", "gate_failed", "rejected", "no_change", "duplicate", "interrupted"];
  const STATUS_ORDER = ["running", "baseline", "keep", "discard", "stale", ...FAILURES];

  const state = {
    tag: null, // the run picked in the header; null: the one the server follows
    runsText: "",
    run: null,
    rows: [],
    stateText: "",
    filter: "all",
    sortKey: "id",
    sortDir: -1, // newest first
    selected: null,
    detail: null,
    detailKey: "",
    logKind: "experiment",
    logFor: "",
    busy: false,
  };

  const $ = (selector) => document.querySelector(selector);

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  function svg(tag, attrs = {}, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value !== null && value !== undefined) node.setAttribute(key, String(value));
    }
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // -- formatting ------------------------------------------------------------------------

  function num(value, digits = 6) {
    if (value === null || value === undefined) return "–";
    if (value !== 0 && (Math.abs(value) >= 1e7 || Math.abs(value) < 1e-4)) return value.toExponential(3);
    return String(Number(value.toPrecision(digits)));
  }

  function signed(value, digits = 4) {
    if (value === null || value === undefined) return "";
    const text = num(value, digits);
    return value > 0 ? "+" + text : text.replace("-", "−");
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 60) return seconds.toFixed(seconds < 10 ? 2 : 1) + " s";
    const s = Math.round(seconds);
    if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
    return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  }

  function since(iso) {
    const t = Date.parse(iso);
    if (Number.isNaN(t)) return "";
    const s = Math.max(0, Math.round((Date.now() - t) / 1000));
    return s < 60 ? `${s} s` : duration(s);
  }

  function shortPath(path) {
    const at = path.lastIndexOf("/.overnight/");
    return at >= 0 ? path.slice(at + 1) : path;
  }

  function clip(text, length) {
    return text.length <= length ? text : text.slice(0, length - 1) + "…";
  }

  function better(delta, goal) {
    if (delta === null || delta === undefined || delta === 0) return "";
    return (goal === "max" ? delta > 0 : delta < 0) ? "better" : "worse";
  }

  // -- fetching --------------------------------------------------------------------------

  async function getJSON(url) {
    const response = await fetch(url, { cache: "no-store" });
    const text = await response.text();
    let body = null;
    try {
      body = JSON.parse(text);
    } catch (err) {
      body = { error: text };
    }
    return { ok: response.ok, status: response.status, text, body };
  }

  // "?tag=..." for the run picked in the header, else "" (the server's run).
  function query() {
    return state.tag ? `?tag=${encodeURIComponent(state.tag)}` : "";
  }

  // The task's runs, in the header's picker (shown when there are two or more).
  async function refreshRuns() {
    let answer;
    try {
      answer = await getJSON("api/runs");
    } catch (err) {
      return;
    }
    if (!answer.ok || answer.text === state.runsText) return;
    state.runsText = answer.text;
    const { runs, followed } = answer.body;
    const pick = $("#run-pick");
    pick.hidden = runs.length < 2;
    pick.replaceChildren(
      ...runs
        .slice()
        .reverse()
        .map((r) =>
          el("option", {
            value: r.tag,
            text: `${r.tag} · ${r.state} · ${experimentsText(r.experiments)}, ${r.kept} kept${r.tag === followed ? " (most recent)" : ""}`,
          }),
        ),
    );
    pick.value = state.tag || followed || "";
  }

  function pickRun(tag) {
    state.tag = tag || null;
    state.stateText = "";
    state.selected = null;
    state.detail = null;
    state.detailKey = "";
    $("#detail-body").hidden = true;
    $("#detail-empty").hidden = false;
    refresh();
  }

  function banner(message, kind = "warn") {
    const node = $("#banner");
    node.hidden = !message;
    node.className = `banner ${kind}`;
    node.textContent = message || "";
  }

  async function refresh() {
    if (state.busy) return;
    state.busy = true;
    try {
      let answer;
      try {
        answer = await getJSON("api/state" + query()); // one read of the ledger for the summary and the rows
      } catch (err) {
        banner("Cannot reach the dashboard server (stopped?); retrying…", "error");
        return;
      }
      if (!answer.ok) {
        const what = answer.status === 404 ? "Waiting for a run" : "The dashboard cannot read the run";
        banner(`${what}: ${answer.body.error || answer.status}`, answer.status === 404 ? "warn" : "error");
        $("#run-state").textContent = answer.status === 404 ? "no run yet" : "error";
        $("#run-state").className = "state idle";
        return;
      }
      banner("");
      const { run, experiments } = answer.body;
      const changed = answer.text !== state.stateText;
      if (state.run && run.tag !== state.run.tag) {
        // Another run (a newer one, without --tag): what was selected belongs to the old one.
        state.selected = null;
        state.detail = null;
        state.detailKey = "";
        $("#detail-body").hidden = true;
        $("#detail-empty").hidden = false;
      }
      state.stateText = answer.text;
      state.run = run;
      state.rows = experiments;
      $("#updated").textContent = "updated " + new Date().toLocaleTimeString();
      if (changed) render();
      else renderClock();
      await refreshDetail(false);
      await refreshRuns();
    } finally {
      state.busy = false;
    }
  }

  // -- header and cards -------------------------------------------------------------------

  function render() {
    renderHeader();
    renderCards();
    renderChart();
    renderFilters();
    renderTable();
    renderVerification();
    renderNotebook();
  }

  // The notes agents left for each other, newest first; each links to the experiment that wrote it.
  function renderNotebook() {
    const notes = (state.run && state.run.notes) || [];
    $("#notebook-panel").hidden = notes.length === 0;
    $("#notebook-count").textContent = notes.length === 1 ? "1 note" : `${notes.length} notes`;
    $("#notebook").replaceChildren(
      ...notes
        .slice()
        .reverse()
        .map((n) => {
          const link = el("a", { href: "#", class: "note-exp", text: `#${n.experiment}` });
          link.addEventListener("click", (ev) => {
            ev.preventDefault();
            select(n.experiment);
          });
          return el("li", { "data-note": String(n.experiment) }, link, ` (worker ${n.worker}${n.agent ? ", " + n.agent : ""}): `, n.text);
        }),
    );
  }

  // The latest `overnight verify` of the run: the gain at scale and each keep's contribution.
  function renderVerification() {
    const v = state.run && state.run.verification;
    $("#verify-panel").hidden = !v;
    if (!v) return;
    const interval = (ci) => (ci ? `[${signed(ci[0])}, ${signed(ci[1])}]` : "–");
    $("#verify-scale").textContent = `verification ${v.verification}: ${v.scale}${v.complete ? "" : " (stopped before the end)"}`;
    $("#verify-gain").textContent =
      `baseline ${num(v.baseline)} → best ${num(v.best)}: gain ${signed(v.gain)} ${interval(v.ci)} ` +
      `(${v.pairs} paired runs, ${Math.round(v.confidence * 100)}% interval; positive = better)`;
    const body = $("#verify-table tbody");
    // A group (keeps that change the same lines) was taken out at once: one row names all its keeps.
    const ids = (a) => a.together || [a.id];
    const together = (a) => {
      const names = ids(a).map((i) => `#${i}`);
      return `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]} together: they change the same lines`;
    };
    const what = (a) =>
      ids(a).length > 1 ? `${together(a)} (${(a.hypotheses || [a.hypothesis]).join("; ")})` : a.hypothesis;
    body.replaceChildren(
      ...v.ablation.map((a) =>
        el(
          "tr",
          {},
          el("td", { class: "num" }, ids(a).join("+")),
          el("td", {}, clip(what(a), 120)),
          el("td", { class: "num" }, a.entangled ? "entangled" : signed(a.contribution)),
          el("td", {}, a.entangled ? a.entangled : interval(a.ci)),
          el("td", {}, a.significant ? "yes" : "no"),
        ),
      ),
    );
  }

  function renderClock() {
    const run = state.run;
    if (run && run.created_at) {
      const task = run.task && run.task !== "." ? `${run.task} · ` : "";
      $("#run-meta").textContent =
        `${task}${run.branch} · ${run.metric}, ${run.goal === "max" ? "higher" : "lower"} is better · started ${since(run.created_at)} ago`;
    }
  }

  function renderHeader() {
    const run = state.run;
    document.title = `overnight · ${run.tag}`;
    $("#run-tag").textContent = run.tag;
    const stateNode = $("#run-state");
    stateNode.textContent = run.running ? "running" : "not running";
    stateNode.className = "state " + (run.running ? "live" : "idle");
    stateNode.title = run.running
      ? "a controller holds this run's lock"
      : `${run.state}; resume with: overnight run --tag ${run.tag}`;
    $("#metric-head").textContent = run.metric;
    renderClock();
  }

  function renderCards() {
    const run = state.run;
    const { baseline, best } = run;
    $("#baseline-value").textContent = baseline ? num(baseline.metric) : "–";
    $("#baseline-sub").textContent = baseline ? `experiment #${baseline.id}` : "not measured yet";
    $("#best-value").textContent = best ? num(best.metric) : "–";
    const bestSub = $("#best-sub");
    bestSub.replaceChildren();
    if (best && baseline && best.id !== baseline.id && best.metric !== null && baseline.metric !== null) {
      const delta = best.metric - baseline.metric;
      const pct = baseline.metric ? ` (${signed((100 * delta) / Math.abs(baseline.metric), 3)}%)` : "";
      bestSub.append(
        el("span", { class: better(delta, run.goal), text: `${signed(delta)}${pct}` }),
        ` vs baseline · #${best.id}`,
      );
    } else {
      bestSub.textContent = best ? "the baseline: nothing kept yet" : "";
    }
    const counts = run.counts || {};
    const after = run.after_baseline; // the experiments after the baseline, as status and `overnight runs` count them
    const failed = FAILURES.reduce((sum, s) => sum + (counts[s] || 0), 0);
    $("#experiments-value").textContent = String(after);
    $("#experiments-sub").textContent =
      `${counts.keep || 0} kept · ${counts.discard || 0} discarded · ${failed} failed` +
      (counts.stale ? ` · ${counts.stale} stale` : "") +
      (counts.running ? ` · ${counts.running} running` : "");
    $("#spend-value").textContent =
      run.cost_usd !== null ? `$${run.cost_usd.toFixed(2)}` : run.tokens ? `${num(run.tokens / 1000, 3)}k tok` : "–";
    $("#spend-sub").textContent = run.tokens
      ? `${run.tokens.toLocaleString()} tokens (${run.tokens_in.toLocaleString()} in, ${run.tokens_out.toLocaleString()} out)`
      : "not reported by the agent";
  }

  // -- the chart ---------------------------------------------------------------------------

  // "1 experiment", "12 experiments": as the live view and the plot say it
  function experimentsText(count) {
    return `${count} experiment${count === 1 ? "" : "s"}`;
  }

  const CLOSE = ["within noise", "below bar"]; // how the judge saw a discard that measured better (views.commands)

  function ticks(lo, hi, count) {
    const span = hi - lo || Math.abs(hi) || 1;
    const raw = span / Math.max(1, count);
    const step0 = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * step0).find((s) => span / s <= count) || 10 * step0;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
    return out;
  }

  function renderChart() {
    const box = $("#chart");
    const run = state.run;
    const rows = state.rows;
    const goal = run.goal;
    const width = Math.max(360, box.clientWidth || 900);
    const height = 340;
    const m = { top: 18, right: 24, bottom: 62, left: 70 };
    const plotH = height - m.top - m.bottom;
    const laneY = height - m.bottom + 20; // failures sit on a lane under the plot
    const plotW = width - m.left - m.right;

    const measured = rows.filter(
      (r) => r.metric !== null && ["baseline", "keep", "discard", "stale"].includes(r.status),
    );
    const keeps = rows.filter((r) => (r.status === "keep" || r.status === "baseline") && r.metric !== null);
    $("#chart-title").textContent =
      `${experimentsText(run.after_baseline)} after the baseline, ${run.kept} kept`;

    const root = svg("svg", {
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": `${run.metric} by experiment`,
    });
    box.replaceChildren(root);
    if (!rows.length) {
      root.append(svg("text", { x: width / 2, y: height / 2, class: "placeholder", "text-anchor": "middle" }, "no experiments yet"));
      renderLegend();
      return;
    }

    // x: experiment ids; y: the metric, focused on the range the best moved through.
    // Room to the right of the last keep for its label: stretch the x axis when it sits near the end.
    const maxId = Math.max(...rows.map((r) => r.id), 1);
    const lastKeep = keeps.length ? keeps[keeps.length - 1].id : maxId;
    const slots = Math.max(maxId + 1, ((lastKeep + 0.5) * plotW) / Math.max(1, plotW - 190));
    const x = (id) => m.left + ((id + 0.5) / slots) * plotW;
    const values = measured.map((r) => r.metric);
    let lo = values.length ? Math.min(...values) : 0;
    let hi = values.length ? Math.max(...values) : 1;
    if (keeps.length >= 2) {
      const kv = keeps.map((r) => r.metric);
      const span = Math.max(...kv) - Math.min(...kv);
      if (goal === "max") lo = Math.max(lo, Math.min(...kv) - 1.2 * span);
      else hi = Math.min(hi, Math.max(...kv) + 1.2 * span);
    }
    if (hi === lo) {
      const pad = Math.abs(hi) * 0.05 || 1;
      lo -= pad;
      hi += pad;
    }
    const pad = (hi - lo) * 0.08;
    lo -= goal === "max" ? pad : 2.2 * pad; // more room on the better side: the keeps' labels go there
    hi += goal === "max" ? 2.2 * pad : pad;
    const y = (v) => m.top + (1 - (Math.min(hi, Math.max(lo, v)) - lo) / (hi - lo)) * plotH;

    // grid and axes
    const grid = svg("g", { class: "grid" });
    for (const t of ticks(lo, hi, 6)) {
      grid.append(svg("line", { x1: m.left, x2: width - m.right, y1: y(t), y2: y(t) }));
      grid.append(svg("text", { x: m.left - 8, y: y(t) + 4, "text-anchor": "end", class: "tick" }, num(t, 5)));
    }
    for (const t of ticks(0, maxId, Math.min(maxId, Math.floor(plotW / 60)))) {
      if (!Number.isInteger(t)) continue;
      grid.append(svg("text", { x: x(t), y: height - m.bottom + 44, "text-anchor": "middle", class: "tick" }, String(t)));
    }
    root.append(grid);
    root.append(svg("line", { class: "axis", x1: m.left, x2: width - m.right, y1: m.top + plotH, y2: m.top + plotH }));
    root.append(svg("line", { class: "lane", x1: m.left, x2: width - m.right, y1: laneY, y2: laneY }));
    root.append(svg("text", { x: m.left - 8, y: laneY + 4, "text-anchor": "end", class: "tick lane-label" }, "failed"));
    root.append(
      svg("text", { x: m.left + plotW / 2, y: height - 4, "text-anchor": "middle", class: "axis-label" }, "experiment"),
    );
    root.append(
      svg(
        "text",
        { x: 14, y: m.top + plotH / 2, "text-anchor": "middle", class: "axis-label", transform: `rotate(-90 14 ${m.top + plotH / 2})` },
        `${run.metric} (${goal === "max" ? "higher" : "lower"} is better)`,
      ),
    );

    // the running best: a step line through the baseline and every keep
    if (keeps.length) {
      let d = "";
      keeps.forEach((r, i) => {
        d += i === 0 ? `M${x(r.id)},${y(r.metric)}` : `H${x(r.id)}V${y(r.metric)}`;
      });
      d += `H${width - m.right}`;
      root.append(svg("path", { class: "best", d }));
    }

    // labels of the keeps, along their stretch of the best line, on the side nothing better can be
    const labels = svg("g", { class: "labels" });
    root.append(labels);
    keeps.forEach((r, i) => {
      const x0 = x(r.id) + 6;
      const x1 = (i + 1 < keeps.length ? x(keeps[i + 1].id) : width - m.right) - 8;
      if (x1 - x0 < 36) return;
      const node = svg("text", { x: x0, y: 0, class: "keep-label", "data-id": r.id });
      labels.append(node);
      const lines = wrapLabel(node, r.status === "baseline" ? "baseline" : r.hypothesis || `#${r.id}`, x0, x1 - x0, 2);
      const y0 = goal === "max" ? y(r.metric) - 7 - (lines - 1) * 13 : y(r.metric) + 15;
      node.setAttribute("y", String(y0));
    });

    // each estimate's 95% interval, where it was measured more than once (as the report's progress plot)
    const bars = svg("g", { class: "intervals" });
    for (const r of measured) {
      if (!r.interval) continue;
      const cx = x(r.id);
      const [top, bottom] = [y(r.metric + r.interval), y(r.metric - r.interval)];
      const bar = svg("path", { class: "interval", d: `M${cx},${top}V${bottom}M${cx - 3},${top}H${cx + 3}M${cx - 3},${bottom}H${cx + 3}` });
      bar.append(svg("title", {}, `#${r.id}: ${num(r.metric)} ± ${num(r.interval, 3)} (95% interval of the mean of ${r.runs} runs)`));
      bars.append(bar);
    }
    root.append(bars);

    // the points: discards grey, keeps green, the baseline dark; clipped ones pinned to the edge
    const points = svg("g", { class: "points" });
    for (const r of measured) {
      const clipped = r.metric > hi || r.metric < lo;
      const cls = [r.status, clipped ? "clipped" : "", r.id === state.selected ? "selected" : ""].join(" ").trim();
      const circle = svg("circle", {
        cx: x(r.id),
        cy: y(r.metric),
        r: r.status === "keep" || r.status === "baseline" ? 5.5 : 4,
        class: cls,
        "data-id": r.id,
      });
      circle.append(svg("title", {}, `#${r.id} ${r.status}: ${num(r.metric)}\n${r.hypothesis || ""}`));
      points.append(circle);
    }
    root.append(points);

    // failures and experiments in progress, on the lane under the plot
    const lane = svg("g", { class: "fails" });
    for (const r of rows) {
      if (measured.includes(r)) continue;
      const cx = x(r.id);
      let mark;
      if (r.status === "running") {
        mark = svg("circle", { cx, cy: laneY, r: 5, class: "running", "data-id": r.id });
      } else {
        mark = svg("path", {
          d: `M${cx - 4},${laneY - 4}L${cx + 4},${laneY + 4}M${cx - 4},${laneY + 4}L${cx + 4},${laneY - 4}`,
          class: `fail ${r.status}${r.id === state.selected ? " selected" : ""}`,
          "data-id": r.id,
        });
      }
      mark.append(svg("title", {}, `#${r.id} ${r.status}${r.reason ? ": " + r.reason : ""}\n${r.hypothesis || ""}`));
      lane.append(mark);
    }
    root.append(lane);

    root.addEventListener("click", (event) => {
      const target = event.target.closest("[data-id]");
      if (target) select(Number(target.getAttribute("data-id")));
    });
    renderLegend();
  }

  // Fill <text> with up to maxLines <tspan> lines of at most width pixels; the last one ends in … if cut.
  function wrapLabel(node, text, x, width, maxLines) {
    const words = text.split(/\s+/).filter(Boolean);
    const fit = (tspan, value) => {
      tspan.textContent = value;
      return tspan.getComputedTextLength() <= width;
    };
    const ellipsize = (tspan, value) => {
      let cut = value;
      while (!fit(tspan, cut + "…") && cut.length > 1) cut = cut.slice(0, -1).trimEnd();
    };
    let i = 0;
    let count = 0;
    while (i < words.length && count < maxLines) {
      const tspan = svg("tspan", { x, dy: count === 0 ? 0 : 13 });
      node.append(tspan);
      count += 1;
      let line = words[i++];
      while (i < words.length && fit(tspan, `${line} ${words[i]}`)) line = `${line} ${words[i++]}`;
      if (!fit(tspan, line)) ellipsize(tspan, line);
      else if (count === maxLines && i < words.length) ellipsize(tspan, line);
      else tspan.textContent = line;
    }
    node.append(svg("title", {}, text));
    return count;
  }

  function renderLegend() {
    const counts = (state.run && state.run.counts) || {};
    const legend = $("#legend");
    legend.replaceChildren();
    const item = (cls, label) => legend.append(el("span", { class: `key ${cls}` }, el("i"), label));
    item("baseline", "baseline");
    item("keep", "kept");
    item("discard", "discarded");
    if (counts.stale) item("stale", "stale (better, not rebased)");
    item("best", "best so far");
    if ((state.rows || []).some((r) => r.interval)) item("interval", "95% interval of the mean");
    if (FAILURES.some((s) => counts[s])) item("fail", "failed (no metric)");
    if (counts.running) item("running", "running");
  }

  // -- the table ---------------------------------------------------------------------------

  function renderFilters() {
    const counts = (state.run && state.run.counts) || {};
    const box = $("#filters");
    box.replaceChildren();
    const present = STATUS_ORDER.filter((s) => counts[s]);
    if (state.filter !== "all" && !present.includes(state.filter)) state.filter = "all";
    const chip = (status, label, count) => {
      const button = el(
        "button",
        { type: "button", class: `chip${state.filter === status ? " active" : ""}`, "data-status": status },
        el("span", { class: `dot ${status}` }),
        label,
        el("b", { text: String(count) }),
      );
      button.addEventListener("click", () => {
        state.filter = status;
        renderFilters();
        renderTable();
      });
      box.append(button);
    };
    chip("all", "all, the baseline too", state.rows.length);
    for (const s of present) chip(s, s.replace("_", " "), counts[s]);
  }

  function compare(a, b) {
    const key = state.sortKey;
    const va = a[key];
    const vb = b[key];
    if (va === vb) return (a.id - b.id) * state.sortDir;
    if (va === null || va === undefined || va === "") return 1; // missing values always last
    if (vb === null || vb === undefined || vb === "") return -1;
    if (key === "status") return (STATUS_ORDER.indexOf(va) - STATUS_ORDER.indexOf(vb)) * state.sortDir;
    if (typeof va === "string") return va.localeCompare(vb) * state.sortDir;
    return (va - vb) * state.sortDir;
  }

  function renderTable() {
    const goal = state.run.goal;
    const rows = state.rows.filter((r) => state.filter === "all" || r.status === state.filter).sort(compare);
    const body = $("#experiments tbody");
    body.replaceChildren(
      ...rows.map((r) => {
        const hyp = el("td", { class: "hyp", title: r.hypothesis }, r.hypothesis || "");
        // a discard's reason is the judge's, except when it broke a guard: then it says which
        if (r.reason && (!["keep", "discard", "baseline"].includes(r.status) || (r.info && r.info.broken_guards))) {
          hyp.append(el("span", { class: "reason", text: ` ${clip(r.reason, 90)}` }));
        }
        const tr = el(
          "tr",
          { "data-id": r.id, tabindex: "0", class: `status-${r.status}${r.id === state.selected ? " selected" : ""}` },
          el("td", { class: "num id", text: String(r.id) }),
          el(
            "td",
            {},
            el("span", { class: `status ${r.status}`, text: r.status.replace("_", " ") }),
            // a discard that measured better than the best, but not enough to keep: as `overnight log` marks it
            ...(CLOSE.includes(r.judged) ? [el("span", { class: "judged", text: ` ${r.judged}` })] : []),
          ),
          el("td", { class: "num metric", text: num(r.metric) }),
          el("td", { class: `num delta ${better(r.delta, goal)}`, text: signed(r.delta) }),
          el("td", { class: "num", text: r.runs ? String(r.runs) : "" }),
          el("td", { class: "num", text: r.duration_s === null ? "" : duration(r.duration_s) }),
          hyp,
        );
        tr.addEventListener("click", () => select(r.id));
        tr.addEventListener("keydown", (event) => {
          if (event.key === "Enter" || event.key === " ") {
            event.preventDefault();
            select(r.id);
          }
        });
        return tr;
      }),
    );
    $("#table-empty").hidden = rows.length > 0;
    for (const th of document.querySelectorAll("#experiments th[data-key]")) {
      th.classList.toggle("sorted", th.dataset.key === state.sortKey);
      th.classList.toggle("asc", th.dataset.key === state.sortKey && state.sortDir > 0);
    }
  }

  function sortBy(key) {
    if (state.sortKey === key) state.sortDir = -state.sortDir;
    else {
      state.sortKey = key;
      state.sortDir = key === "id" || key === "duration_s" || key === "runs" ? -1 : 1;
    }
    renderTable();
  }

  // -- the detail pane ---------------------------------------------------------------------

  function select(id) {
    state.selected = id;
    if (location.hash !== `#${id}`) history.replaceState(null, "", `#${id}`);
    for (const node of document.querySelectorAll("[data-id].selected")) node.classList.remove("selected");
    for (const node of document.querySelectorAll(`[data-id="${id}"]`)) node.classList.add("selected");
    refreshDetail(true);
  }

  async function refreshDetail(force) {
    const id = state.selected;
    if (id === null) return;
    const row = state.rows.find((r) => r.id === id);
    const key = JSON.stringify(row || null);
    // Fetch again when the experiment changed, or while it runs (its log grows).
    if (!force && key === state.detailKey && !(row && row.status === "running")) return;
    state.detailKey = key;
    let answer;
    try {
      answer = await getJSON(`api/experiments/${id}` + query());
    } catch (err) {
      state.detailKey = ""; // try again on the next poll
      return;
    }
    if (state.selected !== id) return;
    if (!answer.ok) {
      state.detailKey = ""; // as after a failed fetch: try again on the next poll
      $("#detail-empty").hidden = false;
      $("#detail-empty").textContent = answer.body.error || `experiment ${id}: ${answer.status}`;
      $("#detail-body").hidden = true;
      return;
    }
    state.detail = answer.body;
    renderDetail();
  }

  function fact(dl, term, value) {
    if (value === null || value === undefined || value === "") return;
    dl.append(el("dt", { text: term }), el("dd", { text: value }));
  }

  function renderDetail() {
    const e = state.detail;
    const run = state.run;
    $("#detail-empty").hidden = true;
    $("#detail-body").hidden = false;
    $("#detail-id").textContent = `#${e.id}`;
    const status = $("#detail-status");
    status.textContent = e.status.replace("_", " ");
    status.className = `status ${e.status}`;
    const metric = $("#detail-metric");
    metric.replaceChildren(`${run.metric} ${num(e.metric)}`);
    if (e.delta !== null) metric.append(" ", el("span", { class: `delta ${better(e.delta, run.goal)}`, text: signed(e.delta) }));
    $("#detail-hypothesis").textContent = e.hypothesis || "(no hypothesis)";
    const reason = $("#detail-reason");
    reason.hidden = !e.reason;
    reason.textContent = e.reason || "";
    const noted = $("#detail-notes");
    noted.hidden = !(e.notes && e.notes.length);
    noted.replaceChildren(...(e.notes || []).map((text) => el("li", { text })));

    const dl = $("#detail-facts");
    dl.replaceChildren();
    fact(dl, "best before", e.parent_metric === null ? "" : num(e.parent_metric));
    if (e.improvement !== null) {
      const ci = e.ci_low !== null && e.ci_high !== null ? ` [${num(e.ci_low, 4)}, ${num(e.ci_high, 4)}]` : "";
      fact(dl, "gain", `${num(e.improvement, 4)}${ci}`);
    }
    fact(dl, "held out", e.holdout === null ? "" : num(e.holdout));
    fact(dl, "runs", e.runs ? String(e.runs) : "");
    fact(dl, "time", e.duration_s === null ? "" : duration(e.duration_s));
    fact(dl, "peak memory", e.peak_memory_mb === null ? "" : `${num(e.peak_memory_mb, 4)} MB`);
    fact(dl, "exit code", e.exit_code === null ? "" : String(e.exit_code));
    fact(dl, "agent", e.agent ? `${e.agent} (worker ${e.worker})` : "");
    fact(dl, "commit", e.commit ? `${e.commit.slice(0, 10)} on ${e.parent.slice(0, 10)}` : "");
    fact(dl, "files", e.files_changed ? `${e.files_changed} changed, +${e.insertions} −${e.deletions}` : "");
    fact(dl, "started", e.started_at ? e.started_at.replace("T", " ").replace("Z", " UTC") : "");
    if (e.tokens_in !== null || e.cost_usd !== null) {
      fact(dl, "agent used", `${e.tokens_in || 0} + ${e.tokens_out || 0} tokens${e.cost_usd !== null ? `, $${e.cost_usd.toFixed(4)}` : ""}`);
    }

    const chips = $("#detail-metrics");
    chips.replaceChildren(
      ...Object.entries(e.metrics || {}).map(([k, v]) => el("span", { class: "chip static" }, `${k} `, el("b", { text: num(v) }))),
    );

    const ms = e.measurements || [];
    $("#detail-measurements-wrap").hidden = ms.length === 0;
    $("#detail-measurements tbody").replaceChildren(
      ...ms.map((m) =>
        el(
          "tr",
          {},
          el("td", { class: "num", text: String(m.round) }),
          el("td", { class: "num", text: String(m.seed) }),
          el("td", { text: m.kind }),
          el("td", { class: "num", text: num(m.value) }),
          el("td", { class: "num", text: duration(m.duration_s) }),
        ),
      ),
    );

    const diffNote = $("#detail-diff-note");
    const saved = e.diff_source === "saved";
    // diff_error: the commit's diff could not be had (the commit is gone); the saved diff, if any, stands in.
    diffNote.textContent = e.diff_error
      ? `(no diff of the commit${saved ? ", the saved diff instead" : ""}: ${e.diff_error})`
      : saved ? "(not committed: the saved diff)" : e.diff_truncated ? "(cut: too long to show)" : "";
    renderDiff(e.diff);
    renderLog();
  }

  function renderDiff(text) {
    const pre = $("#detail-diff");
    if (!text) {
      pre.replaceChildren(el("span", { class: "muted", text: "no change" }));
      return;
    }
    pre.replaceChildren(
      ...text.replace(/\n$/, "").split("\n").map((line) => {
        let cls = "ctx";
        if (line.startsWith("diff ") || line.startsWith("index ") || line.startsWith("+++") || line.startsWith("---")) cls = "meta";
        else if (line.startsWith("@@")) cls = "hunk";
        else if (line.startsWith("+")) cls = "add";
        else if (line.startsWith("-")) cls = "del";
        return el("span", { class: cls, text: line || " " });
      }),
    );
  }

  function renderLog() {
    const e = state.detail;
    if (!e) return;
    for (const tab of document.querySelectorAll("#detail .tab")) tab.classList.toggle("active", tab.dataset.log === state.logKind);
    const logTail = e.logs[state.logKind];
    const pre = $("#detail-log");
    // Follow the end of a growing log unless the reader scrolled up in it.
    const same = state.logFor === `${e.id}:${state.logKind}`;
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent = logTail.exists ? logTail.text || "(empty)" : "(no log)";
    $("#detail-log-note").textContent = logTail.exists
      ? `${logTail.truncated ? "last " : ""}${logTail.lines} line${logTail.lines === 1 ? "" : "s"} · ${shortPath(logTail.path)}`
      : "";
    if (!same || atBottom) pre.scrollTop = pre.scrollHeight;
    state.logFor = `${e.id}:${state.logKind}`;
  }

  // -- wiring ------------------------------------------------------------------------------

  function start() {
    for (const th of document.querySelectorAll("#experiments th[data-key]")) {
      th.addEventListener("click", () => sortBy(th.dataset.key));
    }
    for (const tab of document.querySelectorAll("#detail .tab")) {
      tab.addEventListener("click", () => {
        state.logKind = tab.dataset.log;
        renderLog();
      });
    }
    $("#run-pick").addEventListener("change", (event) => pickRun(event.target.value));
    const fromHash = Number.parseInt(location.hash.slice(1), 10);
    if (Number.isInteger(fromHash)) state.selected = fromHash;
    let resizeTimer = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => state.run && renderChart(), 150);
    });
    refresh();
    setInterval(refresh, POLL_MS);
  }

  start();
})();
