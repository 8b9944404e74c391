"use strict";
// The overview: delivery and open rates by vendor and brand (Chart.js), vendor and stream health; refreshed every 30 s.
// window.pushpipeCharts holds each chart by its canvas id; window.pushpipeLoads (and <body data-loads>) counts the refreshes done.
(() => {
  const {api, el, showError, percent, number, duration, localIso, table, NONE} = pushpipe;
  const REFRESH_MS = 30000;
  const CHARTS = {  // canvas id -> [dimension, rate]
    "chart-delivery-vendor": ["vendor", "delivery"], "chart-open-vendor": ["vendor", "open"],
    "chart-delivery-brand": ["brand", "delivery"], "chart-open-brand": ["brand", "open"],
  };
  const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  const ratio = (part, whole) => (whole > 0 ? part / whole : null);
  window.pushpipeCharts = {};
  window.pushpipeLoads = 0;

  // rows of (hour, vendor, brand) counts -> per hour label, one series per vendor (or brand) of each rate
  function pivot(rows, dimension) {
    const hours = [...new Set(rows.map((r) => r.at))].sort((a, b) => a - b);
    const sums = new Map();
    for (const row of rows) {
      const name = row[dimension] || "(unknown)";
      if (!sums.has(name)) sums.set(name, new Map());
      const sum = sums.get(name).get(row.at) || {accepted: 0, delivered: 0, opened: 0};
      for (const count of ["accepted", "delivered", "opened"]) sum[count] += row[count];
      sums.get(name).set(row.at, sum);
    }
    const series = (rate) => [...sums.keys()].sort().map((name, i) => ({
      label: name,
      data: hours.map((at) => {
        const s = sums.get(name).get(at);
        if (!s) return null;
        return rate === "delivery" ? ratio(s.delivered, s.accepted) : ratio(s.opened, s.delivered);
      }),
      borderColor: COLORS[i % COLORS.length], backgroundColor: COLORS[i % COLORS.length],
      spanGaps: true, tension: 0.2, pointRadius: 2,
    }));
    return {labels: hours.map((at) => localIso(at).slice(0, 16).replace("T", " ")), delivery: series("delivery"), open: series("open")};
  }

  function draw(rows) {
    if (typeof window.Chart === "undefined") {
      throw new Error("Chart.js did not load (/static/chart.umd.js): `pushpipe up` downloads it into the cache");
    }
    const pivots = {vendor: pivot(rows, "vendor"), brand: pivot(rows, "brand")};
    for (const [id, [dimension, rate]] of Object.entries(CHARTS)) {
      const data = {labels: pivots[dimension].labels, datasets: pivots[dimension][rate]};
      const chart = window.pushpipeCharts[id];
      if (chart) {
        chart.data = data;
        chart.update();
      } else {
        window.pushpipeCharts[id] = new window.Chart(document.getElementById(id), {
          type: "line", data,
          options: {
            animation: false, responsive: true, maintainAspectRatio: false,
            scales: {y: {min: 0, max: 1, ticks: {callback: (v) => `${Math.round(v * 100)}%`}}},
            plugins: {legend: {position: "bottom"}, tooltip: {callbacks: {label: (c) => `${c.dataset.label}: ${percent(c.parsed.y)}`}}},
          },
        });
      }
    }
  }

  const flagged = (bad) => (row) => (bad(row) ? "bad" : null);

  function credentials(row) {
    if (!row.credentials.length) return NONE;
    return el("ul", {class: "plain"}, row.credentials.map((c) => el("li", {class: c.expiring_soon ? "bad" : null},
      `${c.credential}: ${localIso(c.expires_at).slice(0, 10)} (${c.expires_in_s < 0 ? "expired " + duration(-c.expires_in_s) + " ago" : "in " + duration(c.expires_in_s)})`,
      c.short_lived ? el("span", {class: "muted"}, " renewed on use") : null)));
  }

  function vendorTable(vendors) {
    return table([
      ["vendor", "vendor"],
      {key: "throughput", label: "tokens/s", render: (r) => number(r.throughput, 2)},
      {key: "failure_rate", label: "failure rate", render: (r) => percent(r.failure_rate), cls: flagged((r) => r.failure_rate > 0.2)},
      {key: "p99_latency_s", label: "p99 due→accepted", render: (r) => (r.p99_latency_s === null ? NONE : `${r.p99_latency_s.toFixed(2)} s`),
       cls: flagged((r) => r.p99_latency_s > 30)},
      {key: "open_breakers", label: "open breakers", render: (r) => number(r.open_breakers), cls: flagged((r) => r.open_breakers > 0)},
      {key: "alerts", label: "firing alerts", render: (r) => r.alerts.join(", ") || NONE, cls: flagged((r) => r.alerts.length > 0)},
      {key: "credentials", label: "credentials expire", render: credentials},
    ], vendors, {empty: "no vendor figures yet", class: "wide"});
  }

  function stageTable(stages) {
    return table([
      ["stage", "stage"],
      {key: "throughput", label: "throughput", render: (r) => (r.throughput === null ? NONE : `${number(r.throughput, 2)} ${r.unit}`)},
      {key: "consumer_lag", label: "consumer lag", render: (r) => number(r.consumer_lag), cls: flagged((r) => r.consumer_lag > 10000)},
      {key: "failure_rate", label: "failure rate", render: (r) => percent(r.failure_rate), cls: flagged((r) => r.failure_rate > 0.2)},
      {key: "p99_latency_s", label: "p99", render: (r) => (r.p99_latency_s === null ? NONE : `${r.p99_latency_s.toFixed(2)} s`)},
      {key: "dead_letters_per_s", label: "dead letters/s", render: (r) => number(r.dead_letters_per_s, 2), cls: flagged((r) => r.dead_letters_per_s > 1)},
      {key: "open_breakers", label: "open breakers", render: (r) => number(r.open_breakers), cls: flagged((r) => r.open_breakers > 0)},
      {key: "firing_alerts", label: "alerts", render: (r) => number(r.firing_alerts), cls: flagged((r) => r.firing_alerts > 0)},
    ], stages.filter((s) => !s.vendor), {hide: ["vendor", "unit"], empty: "no stage figures"});
  }

  function alertTable(alerts) {
    return table([["name", "alert"], ["severity", "severity"], ["stage", "stage"],
      {key: "active_since", label: "since", render: (r) => localIso(r.active_since)}, ["summary", "summary"]],
    alerts, {hide: ["labels"], empty: "No alerts firing."});
  }

  function componentTable(components) {
    return table([["name", "component"], ["version", "version"], ["address", "address"],
      {key: "ok", label: "health", render: (r) => `${r.ok ? "up" : "DOWN"}${r.detail ? ` (${r.detail})` : ""}`, cls: flagged((r) => !r.ok)},
      {key: "restarts", label: "restarts", render: (r) => (r.last_restart ? `${r.restarts} (last ${r.last_restart})` : String(r.restarts))}],
    components, {hide: ["detail", "last_restart"], empty: "none"});
  }

  function showHealth(health) {
    document.getElementById("vendor-health").replaceChildren(vendorTable(health.vendors));
    document.getElementById("stream-health").replaceChildren(stageTable(health.stream.stages));
    document.getElementById("alerts").replaceChildren(alertTable(health.stream.alerts));
    document.getElementById("components").replaceChildren(componentTable(health.stream.components));
  }

  function unavailable(message) {
    for (const id of ["vendor-health", "stream-health", "alerts", "components"]) {
      document.getElementById(id).replaceChildren(el("p", {class: "muted"}, `not available: ${message}`));
    }
  }

  async function load() {
    const hours = document.getElementById("hours").value;
    const app = document.getElementById("app").value.trim();
    const query = new URLSearchParams({hours, ...(app ? {app} : {})});
    document.getElementById("report-link").href = `/report/week.png${app ? `?app=${encodeURIComponent(app)}` : ""}`;
    const errors = [];
    const [overview, health] = await Promise.allSettled([api(`/api/overview?${query}`), api("/api/health")]);
    if (overview.status === "fulfilled") {
      try {
        draw(overview.value.rows);
      } catch (failed) {
        errors.push(failed.message);
      }
    } else {
      errors.push(`rates: ${overview.reason.message}`);
    }
    if (health.status === "fulfilled") {
      showHealth(health.value);
    } else {
      errors.push(`health: ${health.reason.message}`);
      unavailable(health.reason.message);
    }
    showError(errors);
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    window.pushpipeLoads += 1;
    document.body.dataset.loads = String(window.pushpipeLoads);
  }

  document.getElementById("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });
  load();
  setInterval(load, REFRESH_MS);
})();
