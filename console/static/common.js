"use strict";
// Shared by the console's pages: the API's answers and errors, DOM built from text (never from HTML), times and figures.
const pushpipe = (() => {
  const NONE = "–";

  async function api(path, options = {}) {
    const headers = {"Accept": "application/json", ...(options.body ? {"Content-Type": "application/json"} : {})};
    let response;
    try {
      response = await fetch(path, {...options, headers});
    } catch (failed) {
      throw new Error(`the console did not answer (${failed.message})`);
    }
    let body = null;
    try {
      body = await response.json();
    } catch (notJson) {
      body = null;
    }
    if (!response.ok) {
      throw new Error(body && body.error ? body.error : `the console answered HTTP ${response.status}`);
    }
    if (body === null) {
      throw new Error("the console's answer was not JSON");
    }
    return body;
  }

  function showError(messages) {
    const box = document.getElementById("error");
    const list = [].concat(messages).filter(Boolean);
    box.replaceChildren(...list.map((m) => el("p", {}, m)));
    box.hidden = list.length === 0;
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "on") Object.entries(value).forEach(([event, handler]) => node.addEventListener(event, handler));
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  const pad = (n, width = 2) => String(n).padStart(width, "0");

  // epoch ms (or an ISO string) as local ISO 8601 with the offset: 2026-11-29T21:44:20.123+01:00
  function localIso(value) {
    if (value === null || value === undefined || value === "") return NONE;
    const d = new Date(value);
    if (Number.isNaN(d.getTime())) return String(value);
    const offset = -d.getTimezoneOffset();
    const sign = offset >= 0 ? "+" : "-";
    const abs = Math.abs(offset);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:` +
      `${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return NONE;
    const s = Math.abs(seconds);
    const shown = s >= 86400 ? `${(s / 86400).toFixed(1)} d` : s >= 3600 ? `${(s / 3600).toFixed(1)} h` : s >= 60 ? `${Math.round(s / 60)} min` : `${Math.round(s)} s`;
    return seconds < 0 ? `${shown} ago` : shown;
  }

  const percent = (v) => (v === null || v === undefined ? NONE : `${(v * 100).toFixed(1)}%`);
  const number = (v, digits = 0) => (v === null || v === undefined ? NONE : Number(v).toLocaleString(undefined, {maximumFractionDigits: digits}));
  const isTime = (key) => key === "ts" || key === "at" || key.endsWith("_at");

  // any value of a story as text: times by their key's name, lists joined, objects as "key: value"
  function text(key, value) {
    if (value === null || value === undefined || value === "") return NONE;
    if (isTime(key) && (typeof value === "number" || typeof value === "string")) return localIso(value);
    if (key.endsWith("_s") && typeof value === "number") return duration(value);
    if (typeof value === "boolean") return value ? "yes" : "no";
    if (Array.isArray(value)) return value.length ? value.map((v) => text(key, v)).join(", ") : NONE;
    if (typeof value === "object") return Object.entries(value).map(([k, v]) => `${k}: ${text(k, v)}`).join(", ");
    if (typeof value === "number") return number(value, 3);
    return String(value);
  }

  // columns: [key, label] or {key, label, render(row) -> Node|string, cls(row) -> class, optional: shown only when a row
  // has the key}; keys of the rows that no column names follow, labelled with their key, so that a field added to a
  // story shows up too
  function table(columns, rows, options = {}) {
    const cols = columns.map((c) => (Array.isArray(c) ? {key: c[0], label: c[1]} : c))
      .filter((c) => !c.optional || rows.some((row) => c.key in row));
    const known = new Set(cols.map((c) => c.key));
    for (const row of rows) {
      for (const key of Object.keys(row)) {
        if (!known.has(key) && !(options.hide || []).includes(key)) {
          known.add(key);
          cols.push({key, label: key.replaceAll("_", " ")});
        }
      }
    }
    if (options.actions) cols.push({key: "", label: "", render: options.actions});
    if (!rows.length) return el("p", {class: "empty"}, options.empty || "none");
    const classes = (c, row) => [isTime(c.key) ? "time" : null, c.cls ? c.cls(row) : null].filter(Boolean).join(" ") || null;
    return el("div", {class: "scroll"}, el("table", {class: options.class || null},
      el("thead", {}, el("tr", {}, cols.map((c) => el("th", {}, c.label)))),
      el("tbody", {}, rows.map((row) => el("tr", {}, cols.map((c) =>
        el("td", {class: classes(c, row)}, c.render ? c.render(row) : text(c.key, row[c.key]))))))));
  }

  return {api, showError, el, localIso, duration, percent, number, text, table, NONE};
})();
