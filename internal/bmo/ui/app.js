// bmo console: posture, runs and one run's events, read from the ledger routes with a key that
// has the `ledger` scope. Hand-written, no dependencies, no build step.
//
// Rules this file keeps:
// - The key lives in sessionStorage (this tab only), is sent as `Authorization: Bearer`, and is
//   never put in a URL, a cookie or the page.
// - Everything from the server is put in the page as text (textContent, setAttribute): a
//   user-agent or an error message is data, never markup.
// - No inline script or style (the page's Content-Security-Policy forbids both): positions are
//   set through the CSSOM (element.style), colours through classes in app.css.
// - Posture polls every 2 s while its view is shown and the tab is visible, and stops otherwise.
"use strict";

(() => {
  const KEY_ITEM = "bmo.console.key";
  const POLL_MS = 2000;
  const API = "/v1/openai-compat";
  const OUTCOMES = ["ok", "client_error", "upstream_error", "cancelled", "shutting_down", "timeout", "internal_error"];
  const ROUTES = ["/v1/chat/completions", "/v1/completions", "/v1/messages", "/v1/messages/count_tokens",
    "/v1/responses", "/v1/models", "unmatched"];
  const SVG = "http://www.w3.org/2000/svg";

  const $ = (id) => document.getElementById(id);
  let pollTimer = null;
  let pollSeq = 0; // a render from an older poll never overwrites a newer view

  // ---- the key ---------------------------------------------------------------------------------

  function getKey() {
    return sessionStorage.getItem(KEY_ITEM);
  }

  class ApiError extends Error {
    constructor(status, message, code) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path, key) {
    const k = key === undefined ? getKey() : key;
    const headers = { Accept: "application/json" };
    if (k) headers.Authorization = "Bearer " + k;
    let resp;
    try {
      resp = await fetch(path, { headers, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" });
    } catch (e) {
      throw new ApiError(0, "bmo does not answer at " + location.origin + " (" + e.message + ").", "unreachable");
    }
    let body = null;
    try {
      body = await resp.json();
    } catch (e) {
      body = null;
    }
    if (!resp.ok) {
      const err = (body && body.error) || {};
      throw new ApiError(resp.status, err.message || "HTTP " + resp.status, err.code || null);
    }
    return body;
  }

  function keyProblem(e) {
    if (e.status === 401) return "The server refused this key: " + e.message;
    if (e.status === 403) {
      return "This key may not read the ledger: it needs the `ledger` scope (or `admin`). " + e.message;
    }
    return null;
  }

  function showGate(message) {
    stopPolling();
    $("view").replaceChildren();
    $("banner").hidden = true;
    $("nav").hidden = true;
    $("forget").hidden = true;
    $("live").hidden = true;
    $("gate").hidden = false;
    const err = $("gate-error");
    err.textContent = message || "";
    err.hidden = !message;
    $("key").focus();
  }

  async function submitKey(ev) {
    ev.preventDefault();
    const input = $("key");
    const key = input.value.trim();
    const button = $("key-submit");
    button.disabled = true;
    try {
      await api(API + "/posture", key); // a key is good when posture answers
      sessionStorage.setItem(KEY_ITEM, key);
      input.value = "";
      $("gate").hidden = true;
      route();
    } catch (e) {
      showGate(keyProblem(e) || "Could not check the key: " + e.message);
    } finally {
      button.disabled = false;
    }
  }

  function forget() {
    sessionStorage.removeItem(KEY_ITEM);
    showGate("");
  }

  // A data call failed: a refused key sends the user back to the gate, anything else is a banner.
  function failed(e) {
    const problem = keyProblem(e);
    if (problem) {
      sessionStorage.removeItem(KEY_ITEM);
      showGate(problem);
      return;
    }
    const banner = $("banner");
    banner.textContent = e.message;
    banner.hidden = false;
  }

  function ok() {
    $("banner").hidden = true;
  }

  // ---- small DOM helpers -----------------------------------------------------------------------

  // h("td", {class: "num", title: "…"}, child, "text", …): children are nodes or text (as text)
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "on") {
        for (const [name, fn] of Object.entries(v)) el.addEventListener(name, fn);
      } else {
        el.setAttribute(k, v === true ? "" : String(v));
      }
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  function s(tag, attrs) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    return el;
  }

  const dash = "–";

  function ms(v) {
    if (v === null || v === undefined) return dash;
    if (v >= 100) return Math.round(v).toLocaleString("en-US");
    return v.toFixed(v >= 10 ? 1 : 2);
  }

  function count(v) {
    return v === null || v === undefined ? dash : Number(v).toLocaleString("en-US");
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  function localTime(iso) {
    if (!iso) return dash;
    const d = new Date(iso);
    const now = new Date();
    const hms = pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
    if (d.toDateString() === now.toDateString()) return hms;
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + hms;
  }

  function duration(sec) {
    if (sec === null || sec === undefined) return dash;
    if (sec < 60) return Math.round(sec) + " s";
    if (sec < 3600) return Math.floor(sec / 60) + " min";
    if (sec < 86400) {
      const m = Math.floor((sec % 3600) / 60);
      return Math.floor(sec / 3600) + " h" + (m ? " " + m + " min" : "");
    }
    return Math.floor(sec / 86400) + " d " + Math.floor((sec % 86400) / 3600) + " h";
  }

  function badge(kind, value) {
    return h("span", { class: "badge " + kind + "-" + value }, value);
  }

  function runLink(id) {
    return h("a", { class: "mono", href: "#/runs/" + encodeURIComponent(id) }, id);
  }

  function table(columns, rows, empty) {
    // columns: [[header, className]]; rows: arrays of cells (nodes or text)
    if (!rows.length) return h("div", { class: "empty" }, empty || "(none)");
    return h("div", { class: "table-wrap" },
      h("table", {},
        h("thead", {}, h("tr", {}, columns.map(([name, cls]) => h("th", { class: cls || null }, name)))),
        h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c, i) => h("td", { class: columns[i][1] || null }, c)))))));
  }

  function card(title, ...children) {
    return h("div", { class: "card" }, title ? h("h2", {}, title) : null, ...children);
  }

  // ---- the runs table (posture's recent runs and the runs view) --------------------------------

  const RUN_COLUMNS = [["started", ""], ["request id", "mono"], ["status", "num"], ["outcome · error", ""],
    ["route", "mono"], ["agent", ""], ["client", ""], ["ms", "num"], ["tokens", "num"],
    ["tools", "num"], ["user-agent", "ua"]];

  function runRow(r) {
    const ua = h("span", { title: r.client_ua || "" }, r.client_ua || dash);
    return [
      h("span", { title: r.started_at }, localTime(r.started_at)),
      runLink(r.request_id),
      String(r.status),
      [badge("o", r.outcome), r.error_code && r.error_code !== r.outcome ? h("span", { class: "err mono" }, r.error_code) : null],
      h("span", { title: r.route }, r.route.startsWith("/v1/") ? r.route.slice(4) : r.route), // as `bmo runs list`
      r.agent || dash,
      r.client || dash,
      h("span", { title: "time to first byte " + ms(r.ttfb_ms) + " ms" }, ms(r.duration_ms)),
      r.prompt_tokens + " / " + r.completion_tokens,
      r.tool_calls ? h("span", { class: "tools" }, String(r.tool_calls)) : "0",
      ua,
    ];
  }

  function runsTable(runs, empty) {
    const t = table(RUN_COLUMNS, runs.map(runRow), empty);
    t.classList.add("runs");
    return t;
  }

  // ---- charts (SVG, drawn here) ----------------------------------------------------------------

  // The top of a y axis with four steps of a round size (whole numbers for counts).
  function niceMax(v, whole) {
    const raw = Math.max(v, whole ? 4 : 1) / 4;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of whole && p < 10 ? [1, 2, 5, 10] : [1, 2, 2.5, 5, 10]) {
      if (m * p >= raw) return 4 * m * p;
    }
    return 40 * p;
  }

  // The frame both charts share: y grid with labels, x labels every 15 buckets ("-45 min" … "now").
  function frame(svg, width, height, pad, yMax, yFmt, n) {
    const plotH = height - pad.top - pad.bottom;
    for (let i = 0; i <= 4; i++) {
      const y = pad.top + plotH - (plotH * i) / 4;
      svg.append(s("line", { class: i ? "grid-line" : "axis", x1: pad.left, x2: width - pad.right, y1: y, y2: y }));
      const label = s("text", { x: pad.left - 6, y: y + 4, "text-anchor": "end" });
      label.textContent = yFmt((yMax * i) / 4);
      svg.append(label);
    }
    const plotW = width - pad.left - pad.right;
    const step = n > 30 ? 15 : n > 10 ? 5 : 1;
    for (let back = 0; back <= n; back += step) {
      const x = pad.left + plotW * ((n - back) / n);
      const t = s("text", { x, y: height - 6, "text-anchor": back === 0 ? "end" : back === n ? "start" : "middle" });
      t.textContent = back === 0 ? "now" : "-" + back + " min";
      svg.append(t);
    }
  }

  function chartSize(container) {
    return Math.max(320, Math.floor(container.clientWidth || 560));
  }

  function requestsChart(container, stats) {
    const width = chartSize(container);
    const height = 190;
    const pad = { top: 10, right: 8, bottom: 24, left: 40 };
    const svg = s("svg", { class: "chart", width, height, viewBox: "0 0 " + width + " " + height, role: "img" });
    const buckets = stats.buckets;
    const n = buckets.length;
    const yMax = niceMax(Math.max(...buckets.map((b) => b.count)), true);
    frame(svg, width, height, pad, yMax, (v) => count(v), n);
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const bw = plotW / n;
    buckets.forEach((b, i) => {
      let y = pad.top + plotH;
      for (const o of OUTCOMES) {
        const c = b.by_outcome[o];
        if (!c) continue;
        const bh = (plotH * c) / yMax;
        y -= bh;
        const r = s("rect", { class: "o-" + o, x: pad.left + i * bw + bw * 0.12, y, width: Math.max(1, bw * 0.76), height: bh });
        const tip = s("title");
        tip.textContent = localTime(b.start) + ": " + c + " " + o;
        r.append(tip);
        svg.append(r);
      }
    });
    const seen = OUTCOMES.filter((o) => stats.total.by_outcome[o]);
    const legend = h("div", { class: "legend" },
      (seen.length ? seen : ["ok"]).map((o) => h("span", {}, h("span", { class: "sw o-" + o }), o + " " + count(stats.total.by_outcome[o] || 0))));
    container.replaceChildren(svg, legend);
  }

  function latencyChart(container, stats) {
    const width = chartSize(container);
    const height = 190;
    const pad = { top: 10, right: 8, bottom: 24, left: 48 };
    const svg = s("svg", { class: "chart", width, height, viewBox: "0 0 " + width + " " + height, role: "img" });
    const buckets = stats.buckets;
    const n = buckets.length;
    const yMax = niceMax(Math.max(...buckets.map((b) => b.p95_ms || 0)), false);
    frame(svg, width, height, pad, yMax, (v) => (Number.isInteger(v) ? count(v) : ms(v)), n);
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const x = (i) => pad.left + plotW * ((i + 0.5) / n);
    const y = (v) => pad.top + plotH - (plotH * v) / yMax;
    for (const key of ["p95", "p50"]) {
      // one polyline per run of buckets that have runs: an empty minute is a gap, not a zero
      let pts = [];
      const flush = () => {
        if (pts.length > 1) svg.append(s("polyline", { class: "line " + key, points: pts.join(" ") }));
        pts = [];
      };
      buckets.forEach((b, i) => {
        const v = b[key + "_ms"];
        if (v === null || v === undefined) {
          flush();
          return;
        }
        pts.push(x(i).toFixed(1) + "," + y(v).toFixed(1));
        const dot = s("circle", { class: "dot " + key, cx: x(i), cy: y(v), r: 2.5 });
        const tip = s("title");
        tip.textContent = localTime(b.start) + ": " + key + " " + ms(v) + " ms (" + b.count + " runs)";
        dot.append(tip);
        svg.append(dot);
      });
      flush();
    }
    const legend = h("div", { class: "legend" },
      h("span", {}, h("span", { class: "sw p50" }), "p50"), h("span", {}, h("span", { class: "sw p95" }), "p95"),
      h("span", {}, "ms per run, per minute"));
    container.replaceChildren(svg, legend);
  }

  // ---- posture ---------------------------------------------------------------------------------

  function stat(label, value, note) {
    return h("div", { class: "card stat" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value),
      note ? h("div", { class: "note" }, note) : null);
  }

  function postureView() {
    const view = $("view");
    const figures = h("div", { class: "stats", id: "posture-figures" });
    const reqChart = h("div", { id: "chart-requests" });
    const latChart = h("div", { id: "chart-latency" });
    view.replaceChildren(
      h("div", { class: "head" }, h("h1", {}, "Posture"), h("span", { class: "muted", id: "posture-when" })),
      figures,
      h("div", { class: "grid two" },
        card("Requests per minute, last hour", reqChart),
        card("Latency p50 / p95, last hour", latChart)),
      h("div", { class: "grid two", id: "posture-groups" }),
      h("div", { class: "grid two", id: "posture-clients" }),
      h("div", { id: "posture-mcp", hidden: true }),
      card("Recent runs", h("div", { id: "posture-recent" })),
    );
    startPolling();
  }

  function renderPosture(p, stats) {
    const pers = p.persistence || {};
    const persNote = pers.state && pers.state !== "ok"
      ? pers.dropped_rows + " rows dropped; " + (pers.last_error || "")
      : count(pers.written_rows) + " rows written";
    const cfg = p.config || {};
    $("posture-figures").replaceChildren(
      stat("State", badge("s", p.state), "bmo " + p.version),
      stat("Persistence", badge("s", pers.state || "unknown"), persNote),
      stat("In flight", count(p.in_flight), "concurrency " + count(cfg.concurrency)),
      stat("Runs, last hour", count(p.window.runs), "window " + duration(p.window.seconds)),
      stat("Uptime", duration(p.uptime_s), "since " + localTime(p.started_at)),
      stat("Auth", cfg.auth_mode || dash, cfg.bind || ""),
    );
    $("posture-when").textContent = "as of " + localTime(p.generated_at);
    const groupCols = (name) => [[name, "mono"], ["count", "num"], ["p50 ms", "num"], ["p95 ms", "num"]];
    $("posture-groups").replaceChildren(
      card("By route", table(groupCols("route"), p.by_route.map((g) => [g.route, count(g.count), ms(g.p50_ms), ms(g.p95_ms)]),
        "(no runs in the last hour)")),
      card("By outcome", table([["outcome", ""], ["count", "num"], ["p50 ms", "num"], ["p95 ms", "num"]],
        p.by_outcome.map((g) => [badge("o", g.outcome), count(g.count), ms(g.p50_ms), ms(g.p95_ms)]),
        "(no runs in the last hour)")),
    );
    $("posture-clients").replaceChildren(
      card("Top user-agents", table([["user-agent", "mono"], ["count", "num"]],
        p.top_user_agents.map((u) => [u.client_ua, count(u.count)]), "(none)")),
      card("Top clients", table([["client", ""], ["count", "num"]],
        (p.top_clients || []).map((c) => [c.client, count(c.count)]), "(none)")),
    );
    const mcp = p.mcp_servers || [];
    $("posture-mcp").hidden = !mcp.length;
    $("posture-mcp").replaceChildren(mcp.length
      ? card("MCP servers", table([["server", "mono"], ["state", ""], ["tools", "num"], ["last error", ""]],
        mcp.map((m) => [m.name || dash, m.state || dash, count(m.tools === undefined ? m.tool_count : m.tools),
          m.last_error || dash])))
      : "");
    $("posture-recent").replaceChildren(runsTable(p.recent_runs, "(no runs yet)"));
    if (stats) {
      requestsChart($("chart-requests"), stats);
      latencyChart($("chart-latency"), stats);
    }
  }

  async function pollOnce() {
    const seq = ++pollSeq;
    try {
      const [p, stats] = await Promise.all([api(API + "/posture"), api(API + "/stats?minutes=60")]);
      if (seq !== pollSeq || !$("posture-figures")) return;
      ok();
      renderPosture(p, stats);
    } catch (e) {
      if (seq !== pollSeq) return;
      failed(e);
      if (keyProblem(e)) return;
    }
    if (seq === pollSeq) schedule();
  }

  function schedule() {
    clearTimeout(pollTimer);
    pollTimer = null;
    if (document.visibilityState !== "visible" || currentView() !== "posture" || getKey() === null) {
      setLive(false);
      return;
    }
    setLive(true);
    pollTimer = setTimeout(pollOnce, POLL_MS);
  }

  function startPolling() {
    clearTimeout(pollTimer);
    setLive(document.visibilityState === "visible");
    pollOnce();
  }

  function stopPolling() {
    clearTimeout(pollTimer);
    pollTimer = null;
    pollSeq++;
  }

  function setLive(on) {
    const live = $("live");
    live.hidden = currentView() !== "posture";
    live.classList.toggle("paused", !on);
    live.textContent = on ? "live, every 2 s" : "paused";
  }

  // ---- runs ------------------------------------------------------------------------------------

  const FILTERS = ["route", "status", "outcome", "agent", "client", "ua"];

  function runsView(params) {
    const view = $("view");
    const field = (name, label, attrs) => h("label", {}, label,
      h("input", { id: "f-" + name, value: params.get(name) || "", spellcheck: "false", ...attrs }));
    const outcome = h("select", { id: "f-outcome" }, h("option", { value: "" }, "any"),
      OUTCOMES.map((o) => h("option", { value: o, selected: params.get("outcome") === o }, o)));
    const routes = h("datalist", { id: "routes" }, ROUTES.map((r) => h("option", { value: r })));
    const form = h("form", { class: "filters", id: "runs-filter", on: { submit: applyFilters } },
      field("route", "route", { list: "routes", class: "wide", placeholder: "/v1/chat/completions" }), routes,
      field("status", "status", { class: "narrow", inputmode: "numeric", placeholder: "200" }),
      h("label", {}, "outcome", outcome),
      field("agent", "agent", { placeholder: "default" }),
      field("client", "client", { placeholder: "claude-code" }),
      field("ua", "user-agent contains", { class: "wide", placeholder: "OpenAI/Python" }),
      h("button", { type: "submit", id: "f-apply" }, "Filter"),
      h("button", { type: "button", class: "ghost", id: "f-clear", on: { click: () => { location.hash = "#/runs"; } } }, "Clear"));
    const results = h("div", { id: "runs-results" }, h("div", { class: "empty" }, "Loading…"));
    view.replaceChildren(
      h("div", { class: "head" }, h("h1", {}, "Runs"), h("span", { class: "muted" }, "newest first")),
      card(null, form),
      card(null, results),
    );
    loadRuns(params, results);
  }

  function applyFilters(ev) {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const name of FILTERS) {
      const v = $("f-" + name).value.trim();
      if (v) q.set(name, v);
    }
    const qs = q.toString();
    location.hash = "#/runs" + (qs ? "?" + qs : "");
  }

  async function loadRuns(params, results) {
    const q = new URLSearchParams();
    for (const name of [...FILTERS, "cursor"]) if (params.get(name)) q.set(name, params.get(name));
    q.set("limit", "50");
    let page;
    try {
      page = await api(API + "/runs?" + q.toString());
    } catch (e) {
      failed(e);
      results.replaceChildren(h("div", { class: "empty" }, "Could not load the runs."));
      return;
    }
    ok();
    const filtered = FILTERS.some((f) => params.get(f));
    const pager = h("div", { class: "pager" });
    if (params.get("cursor")) {
      const first = new URLSearchParams(params);
      first.delete("cursor");
      const qs = first.toString();
      pager.append(h("a", { href: "#/runs" + (qs ? "?" + qs : ""), id: "runs-newest" }, "← newest"));
    }
    pager.append(h("span", { class: "muted" }, page.data.length + " runs on this page"));
    if (page.next_cursor) {
      const next = new URLSearchParams(params);
      next.set("cursor", page.next_cursor);
      pager.append(h("a", { href: "#/runs?" + next.toString(), id: "runs-older" }, "older →"));
    }
    results.replaceChildren(runsTable(page.data, filtered ? "No run matches these filters." : "No runs (yet)."), pager);
  }

  // ---- one run ---------------------------------------------------------------------------------

  function eventClass(e, run) {
    const d = e.detail || {};
    if (e.name === "upstream_error" || e.name === "client_disconnected") return "bad";
    if (e.name === "tool_result" && d.is_error) return "bad";
    if (e.name === "finished" && run.outcome !== "ok") return "bad";
    if (e.name === "tool_call" || e.name === "tool_result") return "tool";
    return "";
  }

  async function runView(id) {
    const view = $("view");
    view.replaceChildren(h("div", { class: "empty" }, "Loading…"));
    let run, events;
    try {
      const path = API + "/runs/" + encodeURIComponent(id);
      [run, events] = await Promise.all([api(path), api(path + "/events")]);
    } catch (e) {
      if (e.status === 404) {
        ok();
        view.replaceChildren(h("p", {}, h("a", { href: "#/runs" }, "← runs")),
          card("No such run", h("p", {}, e.message)));
        return;
      }
      failed(e);
      view.replaceChildren();
      return;
    }
    ok();
    const evs = events.data;
    const total = Math.max(run.duration_ms || 0, ...evs.map((e) => e.t_ms), 0.001);
    const rows = evs.map((e, i) => {
      const prev = i ? evs[i - 1].t_ms : 0;
      const track = h("div", { class: "track" }, h("div", { class: "rail" }));
      const span = h("div", { class: "span" });
      span.style.left = ((100 * prev) / total).toFixed(3) + "%";
      span.style.width = ((100 * (e.t_ms - prev)) / total).toFixed(3) + "%";
      const mark = h("div", { class: "mark", title: e.name + " at " + ms(e.t_ms) + " ms" });
      mark.style.left = ((100 * e.t_ms) / total).toFixed(3) + "%";
      track.append(span, mark);
      return h("tr", { class: eventClass(e, run) || null, "data-event": e.name },
        h("td", { class: "num muted" }, String(i)),
        h("td", { class: "ev mono nowrap" }, e.name),
        h("td", { class: "num mono" }, ms(e.t_ms)),
        h("td", { class: "num mono muted" }, i ? "+" + ms(e.t_ms - prev) : ""),
        h("td", { class: "track-cell" }, track),
        h("td", { class: "detail" }, e.detail === null ? "" : JSON.stringify(e.detail)));
    });
    const timeline = evs.length
      ? h("div", { class: "table-wrap" }, h("table", { class: "timeline", id: "run-events" },
        h("thead", {}, h("tr", {}, h("th", { class: "num" }, "#"), h("th", {}, "event"), h("th", { class: "num" }, "t ms"),
          h("th", { class: "num" }, "Δ ms"),
          h("th", {}, h("div", { class: "scale" }, h("span", {}, "0"), h("span", {}, ms(total / 2)), h("span", {}, ms(total) + " ms"))),
          h("th", {}, "detail"))),
        h("tbody", {}, rows)))
      : h("div", { class: "empty" }, "(no events)");
    const pairs = Object.entries(run).filter(([k]) => k !== "content").map(([k, v]) => {
      let shown = v === null || v === undefined ? dash : typeof v === "object" ? JSON.stringify(v) : String(v);
      if (k === "api_key_prefix" && v) shown = v + "…"; // the server keeps a prefix only, never the key
      if (k === "started_at" && v) shown = v + "  (" + localTime(v) + " local)";
      return h("tr", {}, h("th", {}, k), h("td", {}, k === "outcome" ? badge("o", v) : shown));
    });
    const parts = [
      h("p", {}, h("a", { href: "#/runs" }, "← runs")),
      h("div", { class: "head" }, h("h1", { class: "mono", id: "run-id" }, run.request_id), badge("o", run.outcome),
        h("span", { class: "muted" }, run.method + " " + run.route + " → " + run.status + ", " + ms(run.duration_ms) + " ms")),
      card("Events (" + evs.length + "), offsets to scale", timeline),
      card("Run", h("table", { class: "kv", id: "run-fields" }, h("tbody", {}, pairs))),
    ];
    if (run.content) parts.push(card("Content (ledger.store_content)", h("pre", { class: "content" }, JSON.stringify(run.content, null, 2))));
    view.replaceChildren(...parts);
  }

  // ---- routing (#/, #/runs?…, #/runs/<id>) -----------------------------------------------------

  function parseHash() {
    const raw = location.hash.replace(/^#/, "") || "/";
    const [path, query] = raw.split("?", 2);
    return { path, params: new URLSearchParams(query || "") };
  }

  function currentView() {
    const { path } = parseHash();
    if (path.startsWith("/runs/")) return "run";
    if (path === "/runs") return "runs";
    return "posture";
  }

  function route() {
    if (getKey() === null) {
      showGate("");
      return;
    }
    $("gate").hidden = true;
    $("nav").hidden = false;
    $("forget").hidden = false;
    const { path, params } = parseHash();
    const viewName = currentView();
    for (const a of document.querySelectorAll("#nav a")) {
      a.classList.toggle("active", a.dataset.view === (viewName === "run" ? "runs" : viewName));
    }
    stopPolling();
    setLive(false);
    window.scrollTo(0, 0);
    if (viewName === "run") runView(decodeURIComponent(path.slice("/runs/".length)));
    else if (viewName === "runs") runsView(params);
    else postureView();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("key-form").addEventListener("submit", submitKey);
    $("forget").addEventListener("click", forget);
    window.addEventListener("hashchange", route);
    document.addEventListener("visibilitychange", () => {
      if (currentView() !== "posture" || getKey() === null) return;
      if (document.visibilityState === "visible") startPolling();
      else {
        stopPolling();
        setLive(false);
      }
    });
    route();
  });
})();
