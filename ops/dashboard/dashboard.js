// The live dashboard: fetches /dashboard/data every second and redraws.  Plain JS, no library:
// the page must work on a closed network.  Every value from the server is set as text, never as HTML.
// The session cookie of the sign-in goes with every request by itself: no URL here holds a key.
"use strict";

(function () {
  const VERBS = ["create", "fix", "delete", "get"];
  const LANES = ["live", "bulk", "background"];
  const COLOURS = { create: "#2563eb", fix: "#16a34a", delete: "#dc2626", get: "#9333ea" };
  const SVG = "http://www.w3.org/2000/svg";
  const CHART = { width: 900, height: 260, left: 44, right: 12, top: 12, bottom: 28 };
  const EVERY_MS = 1000;
  const SIGN_IN = "dashboard/sign-in";

  function $(id) {
    return document.getElementById(id);
  }

  function element(tag, attributes, text) {
    const made = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) made.setAttribute(name, value);
    if (text !== undefined) made.textContent = String(text);
    return made;
  }

  function svg(tag, attributes, text) {
    const made = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes)) made.setAttribute(name, String(value));
    if (text !== undefined) made.textContent = String(text);
    return made;
  }

  function row(cells, attributes) {
    const tr = element("tr", attributes);
    for (const cell of cells) tr.append(cell instanceof Node ? cell : element("td", {}, cell));
    return tr;
  }

  function fill(tbodyOf, rows) {
    $(tbodyOf).querySelector("tbody").replaceChildren(...rows);
  }

  function total(tally) {
    return Object.values(tally || {}).reduce((sum, count) => sum + count, 0);
  }

  function utc(date) {  // the logs' time zone, so that the page and the logs read alike
    return date.toISOString().slice(11, 19) + " UTC";
  }

  function seconds(value) {
    if (value === null || value === undefined) return "–";
    if (value < 0) return "expired " + Math.round(-value) + " s ago";
    return Math.round(value) + " s";
  }

  function drawChart(data) {
    const chart = $("chart");
    const { width, height, left, right, top, bottom } = CHART;
    const points = data.calls[VERBS[0]].length;
    const peak = Math.max(data.rate_limit, ...VERBS.flatMap((verb) => data.calls[verb]));
    const yMax = Math.ceil((peak * 1.15) / 5) * 5;
    const x = (i) => left + ((width - left - right) * i) / Math.max(points - 1, 1);
    const y = (value) => top + (height - top - bottom) * (1 - value / yMax);
    const parts = [];
    for (let tick = 0; tick <= yMax; tick += yMax <= 40 ? 5 : 10) {
      parts.push(svg("line", { x1: left, x2: width - right, y1: y(tick), y2: y(tick), class: "grid" }));
      parts.push(svg("text", { x: left - 6, y: y(tick) + 4, class: "axis", "text-anchor": "end" }, tick));
    }
    for (let minute = 0; minute <= 5; minute++) {
      const at = x(points - 1 - minute * 60);
      const label = minute === 0 ? "now" : "−" + minute + " min";
      parts.push(svg("text", { x: at, y: height - 8, class: "axis", "text-anchor": "middle" }, label));
    }
    const limit = y(data.rate_limit);
    parts.push(svg("line", { x1: left, x2: width - right, y1: limit, y2: limit, class: "limit" }));
    parts.push(svg("text", { x: width - right - 4, y: limit - 5, class: "limit-label", "text-anchor": "end" },
      "limit " + data.rate_limit + "/s"));
    for (const verb of VERBS) {
      const line = data.calls[verb].map((value, i) => x(i).toFixed(1) + "," + y(value).toFixed(1)).join(" ");
      parts.push(svg("polyline", { points: line, class: "series", stroke: COLOURS[verb], "data-verb": verb }));
    }
    VERBS.forEach((verb, i) => {
      const at = left + 10 + i * 80;
      parts.push(svg("rect", { x: at, y: top + 2, width: 12, height: 4, fill: COLOURS[verb] }));
      parts.push(svg("text", { x: at + 16, y: top + 8, class: "legend" }, verb));
    });
    chart.replaceChildren(...parts);
  }

  function drawVerbs(data) {
    fill("verbs", VERBS.map((verb) => {
      const statuses = data.statuses[verb] || {};
      const outcomes = data.outcomes[verb] || {};
      const name = element("td", {}, verb);
      name.style.color = COLOURS[verb];
      return row([
        name,
        element("td", { class: "calls-now" }, data.calls_now[verb].toFixed(1)),
        element("td", { class: "calls-window" }, total(statuses)),
        element("td", { class: "throttled" + (statuses["429"] ? " warn" : "") }, statuses["429"] || 0),
        outcomes.applied || 0,
        outcomes.already_applied || 0,
        element("td", { class: outcomes.failed ? "warn" : "" }, outcomes.failed || 0),
      ], { "data-verb": verb });
    }));
  }

  function drawQueues(data) {
    const depth = (verb, lane) => {
      const found = data.queues.commands.find((queue) => queue.verb === verb && queue.lane === lane);
      return found ? found.messages : "–";
    };
    fill("queues", VERBS.map((verb) =>
      row([verb, ...LANES.map((lane) => element("td", { class: lane }, depth(verb, lane)))],
        { "data-verb": verb })));
    $("depths-age").textContent = data.depths_age === null
      ? "queue depths not read yet" : "read " + Math.round(data.depths_age) + " s ago";
  }

  function drawRetries(data) {
    const tiers = data.queues.retry.map((queue) => queue.tier);
    for (const tier of Object.keys(data.retries)) if (!tiers.includes(tier)) tiers.push(tier);
    fill("retries", tiers.map((tier) => {
      const queue = data.queues.retry.find((found) => found.tier === tier);
      return row([tier, queue ? queue.messages : "–", data.retries[tier] || 0], { "data-tier": tier });
    }));
    $("retries-now").textContent = data.retries_now.toFixed(1);
    $("dead-depth").textContent = data.queues.dead === null ? "–" : data.queues.dead;
    const reasons = Object.entries(data.dead_letters);
    fill("dead", reasons.length ? reasons.map(([reason, count]) => row([reason, count], { "data-reason": reason }))
      : [row(["none", 0])]);
  }

  function drawFleet(data) {
    $("token-expiry").textContent = seconds(data.token_expires_in);
    $("token-refreshes").textContent = data.token_refreshes;
    $("workers").textContent = data.workers.length;
    $("in-flight").textContent = data.in_flight;
    $("worker-names").textContent = data.workers.join(", ");
  }

  function link(text, path, batchId) {
    const query = new URLSearchParams({ batchId: batchId });
    return element("a", { href: "/v1/recalls-batch/" + path + "?" + query.toString() }, text);
  }

  function drawBatches(data) {
    fill("batches", data.batches.map((batch) => {
      const total = batch.total_vins;
      const done = batch.processed_vins;
      const bar = element("div", { class: "bar", role: "progressbar", "aria-valuemin": 0,
        "aria-valuemax": total, "aria-valuenow": done });
      const filled = element("span");
      filled.style.width = (total ? (100 * done) / total : 0).toFixed(1) + "%";
      bar.append(filled);
      const progress = element("td", { class: "progress" });
      progress.append(bar, element("span", { class: "count" }, done + " / " + total));
      const links = element("td", { class: "links" });
      if (batch.finished) links.append(link("JSON", "results", batch.batch_id), " ", link("CSV", "download", batch.batch_id));
      else links.textContent = "when done";
      return row([
        element("td", { class: "id", title: batch.batch_id }, batch.batch_id.slice(0, 12)),
        utc(new Date(batch.created_at)),
        element("td", { class: "state " + batch.status }, batch.status),
        progress,
        batch.hit_count,
        links,
      ], { "data-batch": batch.batch_id });
    }));
    $("no-batches").hidden = data.batches.length > 0;
  }

  function show(state, text) {
    const status = $("status");
    status.dataset.state = state;
    status.textContent = text;
  }

  async function refresh() {
    try {
      const response = await fetch("dashboard/data", { cache: "no-store" });
      if (response.status === 401) {  // the session ended: sign in again
        window.location.assign(SIGN_IN);
        return;
      }
      const body = await response.json();
      if (!response.ok) {
        show("error", body.message || "HTTP " + response.status);
        return;
      }
      $("limit-note").textContent = "(limit " + body.rate_limit + "/s per verb)";
      drawChart(body);
      drawVerbs(body);
      drawQueues(body);
      drawRetries(body);
      drawFleet(body);
      drawBatches(body);
      $("clock").textContent = utc(new Date(body.now * 1000));
      show("live", "live");
    } catch (error) {
      show("error", "no answer from the API");
    } finally {
      window.setTimeout(refresh, EVERY_MS);
    }
  }

  refresh();
})();
