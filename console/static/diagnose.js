"use strict";
// The diagnosis page: one pin's or one message's story from /api/pins and /api/messages, its verdict first; test pushes
// to a pin or one device, followed every second until done. The search is in the address (?app=&pin= or ?app=&msg=).
(() => {
  const {api, el, showError, localIso, duration, text, table, NONE} = pushpipe;
  const POLL_MS = 1000;
  const GIVE_UP_MS = 10 * 60 * 1000;
  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;
  let following = 0;  // the test push being followed; a newer one stops the older one's polling

  const DELIVERY_COLUMNS = [["token", "token"], ["vendor", "vendor"], ["outcome", "outcome"], ["code", "code"], ["reason", "reason"],
    ["requested_at", "requested"], ["sent_at", "sent"], ["completed_at", "vendor answered"], ["delivered_at", "delivered"],
    ["opened_at", "opened"], {key: "receipt", label: "receipt", render: (r) => text("receipt", r.receipt)}];

  function kind() {
    return document.querySelector("input[name=kind]:checked").value;
  }

  function setKind(value) {
    document.querySelector(`input[name=kind][value=${value}]`).checked = true;
    $("id-label").textContent = value === "pin" ? "Pin" : "Message id";
  }

  function clear() {
    showError([]);
    $("verdict").hidden = true;
    $("verdict").replaceChildren();
    $("story").replaceChildren();
  }

  function verdict(sentences) {
    const list = [].concat(sentences || []);
    $("verdict").replaceChildren(el("h2", {}, "Verdict"), list.length ? el("ul", {}, list.map((s) => el("li", {}, s))) : el("p", {}, "Nothing to say."));
    $("verdict").hidden = false;
  }

  function facts(pairs) {
    return el("dl", {class: "facts"}, pairs.flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
  }

  function quietHours(quiet) {
    if (!quiet) return "none";
    return `${quiet.start}–${quiet.end}${quiet.active_now ? " (active now)" : " (not now)"}`;
  }

  function testPushButton(app, target, label) {
    return el("button", {type: "button", class: "test-push-button", on: {click: () => testPush(app, target)}}, label);
  }

  function pinStory(story) {
    const app = story.app_id;
    const prefs = story.preferences || {};
    const parts = [
      el("h2", {}, `Pin ${story.pin} in app ${app}`),
      facts([["time zone", text("timezone", story.timezone)], ["local time", text("local_time", story.local_time)],
        ["quiet hours", quietHours(story.quiet_hours)],
        ["opted out of categories", text("opted_out_categories", prefs.opted_out_categories)],
        ["opted out of channels", text("opted_out_channels", prefs.opted_out_channels)],
        ["unsubscribed", text("unsubscribed", prefs.unsubscribed)]]),
      el("h3", {}, "Caps today"),
      table([["category", "category"], ["used", "used"], ["limit", "limit"]], story.caps || [], {empty: "no caps"}),
      el("h3", {}, "Devices ", testPushButton(app, {pin: story.pin}, "Send a test push to all of them")),
      table([
        {key: "token", label: "token", render: (r) => el("code", {}, r.token)}, ["vendor", "vendor"], ["brand", "brand"], ["model", "model"],
        ["os_version", "OS"], ["app_version", "app version"], ["environment", "environment"], ["bound_at", "bound"],
        {key: "token_age_s", label: "token age", render: (r) => duration(r.token_age_s)}, ["state", "state"], ["switch", "switch"],
        {key: "switch_history", label: "switch history", render: (r) => (r.switch_history || []).map((h) => `${h.switch} ${localIso(h.ts)}`).join("; ") || NONE},
        {key: "last_receipt", label: "last receipt", render: (r) => (r.last_receipt ? `${r.last_receipt.state} ${r.last_receipt.code || ""} at ${localIso(r.last_receipt.ts)}` : NONE)},
      ], story.devices || [], {empty: "no devices bound to this pin", actions: (r) => testPushButton(app, {token: r.token}, "Test push")}),
      el("h3", {}, "Recent pushes"),
    ];
    const pushes = story.pushes || [];
    if (!pushes.length) parts.push(el("p", {class: "empty"}, "no pushes to this pin"));
    for (const push of pushes) {
      const {deliveries, why, msg_id: msg, ...rest} = push;
      parts.push(el("article", {class: "push"},
        el("h4", {}, el("a", {href: `/diagnose?app=${enc(app)}&msg=${enc(msg)}`}, msg), ` ${text("category", push.category)}, ${localIso(push.requested_at)}`),
        why ? el("p", {class: "why"}, why) : null,
        facts(Object.entries(rest).filter(([k]) => !["category", "requested_at"].includes(k)).map(([k, v]) => [k.replaceAll("_", " "), text(k, v)])),
        table(DELIVERY_COLUMNS, deliveries || [], {empty: "no deliveries"})));
    }
    return parts;
  }

  function messageStory(story) {
    const counts = Object.entries(story.counts || {}).map(([state, n]) => ({state, n}));
    return [
      el("h2", {}, `Message ${story.msg_id} in app ${story.app_id}`),
      facts([["requested", localIso(story.requested_at)], ["category", text("category", story.category)], ["priority", text("priority", story.priority)],
        ["campaign", text("campaign", story.campaign)], ["vendors", text("vendors", story.vendors)]]),
      el("h3", {}, "Hops"),
      table([["name", "hop"], ["at", "first at"], {key: "median", label: "median at", render: (r) => localIso(r.median), cls: () => "time", optional: true},
        {key: "last", label: "last at", render: (r) => localIso(r.last), cls: () => "time", optional: true},
        {key: "count", label: "deliveries", optional: true},
        ["since_previous_ms", "since previous (ms)"], ["sla_ms", "SLA (ms)"],
        {key: "within_sla", label: "within SLA", render: (r) => (r.within_sla === null || r.within_sla === undefined ? NONE : r.within_sla ? "yes" : "NO"),
         cls: (r) => (r.within_sla === false ? "bad" : null)}], story.hops || [], {empty: "no hops recorded"}),
      el("h3", {}, "Counts"),
      table([["state", "outcome or receipt"], ["n", "tokens"]], counts, {empty: "nothing counted"}),
      el("h3", {}, "Failures by reason"),
      table([["state", "state"], ["code", "code"], ["reason", "reason"], ["count", "count"]], story.failures || [], {empty: "no failures"}),
    ];
  }

  async function search(app, what, id) {
    clear();
    $("search-button").disabled = true;
    try {
      const story = await api(what === "pin" ? `/api/pins/${enc(app)}/${enc(id)}` : `/api/messages/${enc(app)}/${enc(id)}`);
      verdict(story.verdict);
      $("story").replaceChildren(...(what === "pin" ? pinStory(story) : messageStory(story)));
    } catch (failed) {
      showError(failed.message);
    } finally {
      $("search-button").disabled = false;
    }
  }

  function progressView(box, sent, progress, state) {
    box.dataset.state = state;
    const status = {sending: "sending…", waiting: "waiting for the vendors' answers and receipts…", done: "done", stopped: "stopped"}[state];
    box.replaceChildren(
      el("h2", {}, "Test push"),
      el("p", {class: "status"}, sent ? `${sent.msg_id} to ${sent.targets.length} device(s): ${status}` : status),
      progress ? table(DELIVERY_COLUMNS, progress.deliveries || [], {empty: "no deliveries yet"}) : null);
  }

  async function testPush(app, target) {
    const mine = ++following;
    const box = $("test-push");
    box.hidden = false;
    progressView(box, null, null, "sending");
    let sent;
    try {
      sent = await api("/api/test-push", {method: "POST", body: JSON.stringify({app, ...target})});
    } catch (failed) {
      showError(`test push: ${failed.message}`);
      progressView(box, null, null, "stopped");
      return;
    }
    progressView(box, sent, null, "waiting");
    const until = Date.now() + GIVE_UP_MS;
    while (mine === following) {
      let progress;
      try {
        const targets = new URLSearchParams((sent.targets || []).map((token) => ["target", token]));
        progress = await api(`/api/test-push/${enc(sent.app_id || app)}/${enc(sent.msg_id)}?${targets}`);
      } catch (failed) {
        showError(`test push: ${failed.message}`);
        progressView(box, sent, null, "stopped");
        return;
      }
      if (mine !== following) return;
      progressView(box, sent, progress, progress.done ? "done" : Date.now() > until ? "stopped" : "waiting");
      if (progress.done || Date.now() > until) return;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  function fromAddress() {
    const params = new URLSearchParams(window.location.search);
    const app = params.get("app") || "";
    const what = params.has("msg") ? "msg" : "pin";
    const id = params.get(what) || "";
    $("app").value = app;
    $("id").value = id;
    setKind(what);
    if (app && id) search(app, what, id);
    else clear();
  }

  document.querySelectorAll("input[name=kind]").forEach((radio) => radio.addEventListener("change", () => setKind(kind())));
  $("search").addEventListener("submit", (event) => {
    event.preventDefault();
    const app = $("app").value.trim();
    const id = $("id").value.trim();
    history.pushState(null, "", `/diagnose?${new URLSearchParams({app, [kind()]: id})}`);
    search(app, kind(), id);
  });
  window.addEventListener("popstate", fromAddress);
  fromAddress();
})();
