// The operator console. Everything goes through the management API with the bearer
// token the operator typed; the token lives in sessionStorage only (never in a URL, a
// cookie or a log). Values are put on the page as text (textContent), never as HTML.
"use strict";
(() => {
  const TOKEN_KEY = "hubspot-sync-console-token";
  // The API is served beside the page: strip the console's own path from this URL.
  const BASE = location.pathname.replace(/\/v1\/sync\/console\/?$/, "");
  const API = BASE + "/v1/sync";
  const REFRESH_MS = 15000;
  const $ = (id) => document.getElementById(id);
  let refreshTimer = null;

  // --- small DOM helpers ------------------------------------------------------------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else if (key === "class") el.className = value;
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }
  const text = (v) => (v === null || v === undefined ? "—" : typeof v === "object" ? JSON.stringify(v) : String(v));
  const when = (v) => (v ? new Date(v).toLocaleString() : "—");
  const announce = (message) => { $("announce").textContent = message; };
  function table(caption, headers, rows, empty) {
    if (!rows.length) return h("p", { class: "muted" }, empty);
    return h("table", {},
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, rows));
  }
  function field(id, label, input) {
    input.id = id;
    return h("div", {}, h("label", { for: id }, label), input);
  }
  const notice = (message) => h("p", { class: "notice", role: "note" }, message);
  const failure = (error) => h("p", { class: "error", role: "alert" }, error.message || String(error));

  // --- the API ----------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, message, missingRoute) {
      super(message);
      this.status = status;
      this.missingRoute = missingRoute;
    }
  }
  async function call(method, path, body, accept) {
    const headers = { Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY) };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    headers.Accept = accept || "application/json";
    const response = await fetch(path, {
      method, headers, cache: "no-store", credentials: "omit", redirect: "error",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const raw = await response.text();
    if (response.ok) return accept ? raw : JSON.parse(raw);
    let message = response.status + " " + response.statusText;
    try { message = JSON.parse(raw).error || message; } catch (_) { /* not JSON */ }
    // The router answers "no route <path>" for a route this server does not have.
    const missing = response.status === 404 && message.startsWith("no route ");
    if (response.status === 401 || response.status === 403) signOut(message);
    throw new ApiError(response.status, message, missing);
  }
  const api = (method, path, body) => call(method, API + path, body);
  function routeMissing(error, what) {
    if (error instanceof ApiError && error.missingRoute)
      return notice(what + " needs " + error.message.replace("no route ", "") +
        ", which this server does not have yet (it comes with the fleet routes of issue 17).");
    return failure(error);
  }
  const query = (params) => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
    const s = q.toString();
    return s ? "?" + s : "";
  };
  // A customer typed by an operator: a UUID, "ban:B-1", or a bare BAN.
  const UUID_RE = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;
  const customerRef = (typed) => {
    const v = typed.trim();
    return !v || UUID_RE.test(v) || v.startsWith("ban:") ? v : "ban:" + v;
  };

  // --- /metrics, as Prometheus text ---------------------------------------------------
  function parseMetrics(body) {
    const samples = [];
    for (const line of body.split("\n")) {
      const m = /^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
      if (!m || line.startsWith("#")) continue;
      const labels = {};
      for (const pair of (m[3] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
      samples.push({ name: m[1], labels, value: Number(m[4]) });
    }
    return samples;
  }
  const metric = (samples, name, labels) => samples.filter((s) => s.name === name &&
    Object.entries(labels || {}).every(([k, v]) => s.labels[k] === v));
  const total = (list) => (list.length ? list.reduce((a, s) => a + s.value, 0) : null);

  // --- views ------------------------------------------------------------------------
  function card(label, value, tone) {
    return h("div", { class: "card" + (tone && value ? " " + tone : "") },
      h("dt", {}, label), h("dd", {}, value === null || value === undefined ? "—" : value));
  }

  async function overview(view) {
    view.append(h("h2", {}, "Overview"),
      h("p", { class: "muted", id: "refreshed" }, "loading…"));
    const [metrics, fleet, runs] = await Promise.allSettled([
      call("GET", API + "/metrics", undefined, "text/plain"),
      api("GET", "/customers?limit=1"),
      api("GET", "/reconciliation-runs?limit=100"),
    ]);
    const body = h("div", { id: "overview-body" });
    if (fleet.status === "fulfilled") {
      const c = fleet.value.counts;
      const p = fleet.value.pause;
      body.append(h("h3", {}, "Customers by sync state"), h("dl", { class: "cards", id: "state-counts" },
        card("In conflict", c.in_conflict, "bad"), card("Failed", c.failed, "bad"),
        card("Unlinked", c.unlinked, "warn"), card("Pending", c.pending),
        card("In sync", c.in_sync), card("All customers", c.total)),
      h("p", { id: "pause-state" }, p.paused
        ? h("span", { class: "paused" }, "The sync is PAUSED" + (p.reason ? ": " + p.reason : "") +
            (p.since ? " (since " + when(p.since) + (p.by ? " by " + p.by : "") + ")" : ""))
        : h("span", { class: "ok" }, "The sync is running.")));
    } else body.append(routeMissing(fleet.reason, "Counts per sync state"));
    if (metrics.status === "fulfilled") {
      const s = parseMetrics(metrics.value);
      const budget = metric(s, "hubspot_api_daily_budget_used_ratio");
      const maxBudget = budget.length ? Math.max(...budget.map((b) => b.value)) : null;
      body.append(h("h3", {}, "Work and backlogs"), h("dl", { class: "cards", id: "backlogs" },
        card("Open conflicts", total(metric(s, "hubspot_sync_conflicts_open")), "bad"),
        card("Failed queue items", total(metric(s, "hubspot_sync_queue_depth", { status: "FAILED" })), "bad"),
        card("Queued items", total(metric(s, "hubspot_sync_queue_depth", { status: "QUEUED" }))),
        card("Webhook backlog", total(metric(s, "hubspot_sync_webhook_backlog")), "warn"),
        card("Outbound backlog", total(metric(s, "hubspot_sync_outbound_pending")), "warn"),
        card("HubSpot budget used today", maxBudget === null ? null : (100 * maxBudget).toFixed(1) + " %",
          maxBudget > 0.8 ? "bad" : null)));
      const paused = metric(s, "hubspot_sync_paused");
      if (fleet.status !== "fulfilled" && paused.length)
        body.append(h("p", { id: "pause-state" }, paused[0].value ? h("span", { class: "paused" }, "The sync is PAUSED")
          : h("span", { class: "ok" }, "The sync is running.")));
    } else body.append(failure(new Error("metrics: " + metrics.reason.message)));
    if (runs.status === "fulfilled") {
      const last = new Map();
      for (const run of runs.value.items) {
        const key = run.run_type + " " + run.entity_type + (run.dry_run ? " (dry run)" : "");
        if (!last.has(key)) last.set(key, run);
      }
      body.append(h("h3", {}, "Last reconciliation of each type"), table("Last runs",
        ["Type", "Status", "Started", "Checked", "In sync", "Updated", "Conflicts", "Errors"],
        [...last.entries()].map(([key, r]) => h("tr", {}, h("td", {}, key), h("td", {}, r.status),
          h("td", {}, when(r.started_at)), h("td", { class: "num" }, text(r.total_records)),
          h("td", { class: "num" }, text(r.records_in_sync)), h("td", { class: "num" }, text(r.records_updated)),
          h("td", { class: "num" }, text(r.conflicts_detected)), h("td", { class: "num" }, text(r.errors_encountered)))),
        "No reconciliation has run yet."));
    } else body.append(failure(runs.reason));
    view.append(body);
    $("refreshed").textContent = "Updated " + new Date().toLocaleTimeString() +
      "; refreshes every " + REFRESH_MS / 1000 + " s.";
    refreshTimer = setTimeout(() => { if (current() === "overview") render(); }, REFRESH_MS);
  }

  function valueFor(conflict, typed) {
    // The typed value is WARP's: keep the type WARP's current value has.
    const current = conflict.warp_value;
    if (typeof current === "number") {
      const n = Number(typed);
      if (typed.trim() === "" || Number.isNaN(n)) throw new Error("enter a number");
      return n;
    }
    if (typeof current === "boolean") {
      if (!/^(true|false)$/i.test(typed.trim())) throw new Error("enter true or false");
      return /^true$/i.test(typed.trim());
    }
    return typed;
  }

  function conflictRow(customer, conflict) {
    const status = h("span", { role: "status" });
    const custom = h("input", { type: "text", "aria-label": "Value for " + conflict.field });
    const row = h("tr", { "data-customer": customer.customer_id, "data-field": conflict.field });
    async function resolve(resolution, value) {
      const body = { field_name: conflict.field, resolution };
      if (resolution === "use_custom_value") {
        try { body.value = valueFor(conflict, value); } catch (e) { status.textContent = e.message; return; }
      }
      row.querySelectorAll("button").forEach((b) => { b.disabled = true; });
      try {
        await api("POST", "/customers/" + customer.customer_id + "/resolve-conflict", body);
        row.remove();
        announce("Resolved " + conflict.field + " of " + (customer.company_name || customer.customer_id));
      } catch (error) {
        status.textContent = error.message;
        row.querySelectorAll("button").forEach((b) => { b.disabled = false; });
      }
    }
    row.append(
      h("td", {}, customer.company_name || "", h("br"), h("span", { class: "muted mono" }, customer.ban || customer.customer_id)),
      h("td", {}, conflict.field, h("br"), h("span", { class: "muted" }, conflict.entity_type)),
      h("td", { class: "value" }, text(conflict.warp_value), h("br"), h("span", { class: "muted" }, when(conflict.warp_modified_at))),
      h("td", { class: "value" }, text(conflict.hubspot_value), h("br"), h("span", { class: "muted" }, when(conflict.hubspot_modified_at))),
      h("td", {}, conflict.rule, h("br"), h("span", { class: "muted" }, "since " + when(conflict.conflict_detected_at))),
      h("td", {}, h("div", { class: "actions" },
        h("button", { type: "button", onclick: () => resolve("use_warp_value") }, "Use WARP's"),
        h("button", { type: "button", onclick: () => resolve("use_hubspot_value") }, "Use HubSpot's"),
        custom,
        h("button", { type: "button", onclick: () => resolve("use_custom_value", custom.value) }, "Use this value"),
        status)));
    return row;
  }

  async function conflictsOf(customers) {
    const rows = [];
    for (const customer of customers) {
      const list = await api("GET", "/customers/" + customer.customer_id + "/conflicts");
      for (const c of list.conflicts) rows.push(conflictRow(customer, c));
    }
    return table("Open conflicts", ["Customer", "Field", "WARP's value", "HubSpot's value", "Rule", "Resolve"],
      rows, "No open conflicts.");
  }

  async function conflicts(view) {
    view.append(h("h2", {}, "Conflicts"));
    try {
      const page = await api("GET", "/customers?state=in_conflict&limit=50");
      view.append(await conflictsOf(page.items));
      if (page.next_cursor) view.append(h("p", { class: "muted" }, "Showing the first 50 customers in conflict; resolve these to see more."));
    } catch (error) {
      view.append(routeMissing(error, "The list of customers in conflict"));
      if (!(error instanceof ApiError && error.missingRoute)) return;
      const input = h("input", { type: "text", required: true, autocomplete: "off" });
      const out = h("div");
      view.append(h("form", { class: "inline", onsubmit: async (e) => {
        e.preventDefault(); out.replaceChildren();
        try {
          const status = await api("GET", "/customers/" + encodeURIComponent(customerRef(input.value)) + "/status");
          out.append(await conflictsOf([status]));
        } catch (err) { out.append(failure(err)); }
      } }, field("conflict-customer", "Customer id", input), h("button", { type: "submit" }, "Show its conflicts")), out);
    }
  }

  function queueRow(item) {
    const status = h("span", { role: "status" });
    const row = h("tr", { "data-id": item.id },
      h("td", {}, item.kind || item.operation, h("br"), h("span", { class: "muted" }, item.direction)),
      h("td", { class: "mono" }, item.entity_type + " " + text(item.entity_id || item.hubspot_object_id)),
      h("td", { class: "value" }, text(item.last_error)),
      h("td", { class: "num" }, text(item.retry_count) + " / " + text(item.max_retries)),
      h("td", {}, when(item.created_at)),
      h("td", {}, h("div", { class: "actions" }, h("button", { type: "button", onclick: async (e) => {
        e.target.disabled = true;
        try {
          const result = await api("POST", "/queue/" + item.id + "/replay");
          status.textContent = result.replayed ? "queued again" : "already queued";
          row.classList.add("muted");
          announce("Replayed queue item " + item.id);
        } catch (error) { status.textContent = error.message; e.target.disabled = false; }
      } }, "Replay"), status)));
    return row;
  }

  async function failures(view) {
    view.append(h("h2", {}, "Failures"),
      h("p", { class: "muted" }, "Failed queue items, outbound writes and HubSpot edits that could not be applied, with their errors."));
    const list = h("div");
    const kind = h("input", { type: "text", autocomplete: "off", placeholder: "outbound, inbound_batch…" });
    const contains = h("input", { type: "text", autocomplete: "off" });
    const customer = h("input", { type: "text", autocomplete: "off", placeholder: "id or BAN" });
    const bulkOut = h("div", { role: "status" });
    view.append(h("h3", {}, "Replay all that match"), h("form", { class: "inline", onsubmit: async (e) => {
      e.preventDefault(); bulkOut.replaceChildren();
      try {
        const result = await api("POST", "/queue/replay", {
          status: "FAILED", kind: kind.value.trim() || undefined,
          error_contains: contains.value.trim() || undefined,
          customer: customerRef(customer.value) || undefined,
        });
        bulkOut.append(h("p", { class: "ok" }, "Matched " + result.matched + ", queued again " +
          result.replayed.length + ", left alone " + result.unchanged.length + "."));
        await load();
      } catch (error) { bulkOut.append(routeMissing(error, "Replaying by filter")); }
    } }, field("bulk-kind", "Kind", kind), field("bulk-error", "Error contains", contains),
      field("bulk-customer", "Customer", customer), h("button", { type: "submit" }, "Replay matching")), bulkOut,
    h("h3", {}, "Failed items"), list);
    async function load() {
      list.replaceChildren();
      const page = await api("GET", "/queue?status=FAILED&limit=200");
      list.append(table("Failed queue items", ["Kind", "Record", "Error", "Retries", "Created", "Replay"],
        page.items.map(queueRow), "Nothing has failed."));
    }
    await load();
  }

  async function changes(view) {
    view.append(h("h2", {}, "Changes"));
    const customer = h("input", { type: "text", autocomplete: "off", placeholder: "id or BAN" });
    const direction = h("select", {}, h("option", { value: "" }, "both"),
      h("option", { value: "WARP_TO_HUBSPOT" }, "WARP → HubSpot"), h("option", { value: "HUBSPOT_TO_WARP" }, "HubSpot → WARP"));
    const out = h("div");
    let cursor = null;
    async function load(more) {
      if (!more) { out.replaceChildren(); cursor = null; }
      try {
        const page = await api("GET", "/changes" + query({ customer: customerRef(customer.value), direction: direction.value, limit: 50, cursor }));
        const rows = [];
        for (const change of page.items) {
          rows.push(h("tr", {}, h("td", {}, when(change.at)),
            h("td", {}, change.company_name || "", h("br"), h("span", { class: "muted mono" }, change.ban || text(change.customer_id))),
            h("td", {}, change.direction, h("br"), h("span", { class: "muted" }, change.entity_type + " " + change.operation)),
            h("td", {}, change.status),
            h("td", {}, h("ul", {}, change.fields.map((f) => h("li", {}, h("strong", {}, f.field), " ",
              f.sealed ? h("span", { class: "badge" }, "sealed") : h("span", { class: "value" }, text(f.old) + " → " + text(f.new)),
              f.kind === "conflict" ? h("span", { class: "badge bad" }, "conflict") : null,
              f.reason ? h("span", { class: "muted" }, " (" + f.reason + ")") : null)))),
            h("td", {}, text(change.triggered_by_user || change.triggered_by))));
        }
        out.querySelector("button.more")?.remove();
        out.append(table("Changes, newest first", ["When", "Customer", "Direction", "Status", "Fields", "By"], rows, more ? "No older changes." : "No changes."));
        cursor = page.next_cursor;
        if (cursor) out.append(h("button", { type: "button", class: "more", onclick: () => load(true) }, "Older changes"));
      } catch (error) { out.append(routeMissing(error, "The change feed")); }
    }
    view.append(h("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); load(false); } },
      field("changes-customer", "Customer", customer), field("changes-direction", "Direction", direction),
      h("button", { type: "submit" }, "Show")), out);
    await load(false);
  }

  function report(run) {
    const r = run.report || {};
    const parts = [h("dl", { class: "cards" },
      card("Status", run.status), card("Records", run.total_records),
      card("Linked, checked", (r.records || {}).checked),
      card("Updated" + (run.dry_run ? " (would be)" : ""), (r.records || {}).updated ?? run.records_updated),
      card("Conflicts", (r.records || {}).conflicts ?? run.conflicts_detected, "bad"),
      card("Errors", run.errors_encountered, "bad"))];
    const fields = Object.entries(r.fields || {});
    if (fields.length) parts.push(h("h3", {}, "Drift by field"), table("Drift by field", ["Field", "Counts"],
      fields.map(([name, counts]) => h("tr", {}, h("td", {}, name), h("td", {},
        Object.entries(counts).filter(([, v]) => v).map(([k, v]) => v + " " + k.replace("_", " ")).join(", ") || "none"))), ""));
    parts.push(h("details", {}, h("summary", {}, "The whole report"), h("pre", {}, JSON.stringify(r, null, 2))));
    return h("div", { id: "run-report", "data-run": run.id, "data-status": run.status }, parts);
  }

  async function reconcile(view) {
    view.append(h("h2", {}, "Reconcile"));
    const entity = h("select", {}, h("option", { value: "customer" }, "customers (companies)"), h("option", { value: "contact" }, "contacts"));
    const dry = h("input", { type: "checkbox", checked: true });
    const out = h("div", { "aria-live": "polite" });
    const runs = h("div");
    async function watch(id) {
      const run = await api("GET", "/reconciliation-runs/" + id);
      out.replaceChildren(h("h3", {}, (run.dry_run ? "Dry run " : "Run ") + run.id), report(run));
      if (run.status === "RUNNING") refreshTimer = setTimeout(() => { if (current() === "reconcile") watch(id).catch((e) => out.append(failure(e))); }, 1500);
      else { announce("Reconciliation " + run.status.toLowerCase()); await listRuns(); }
    }
    async function listRuns() {
      const page = await api("GET", "/reconciliation-runs?limit=20");
      runs.replaceChildren(table("Recent runs", ["Started", "Type", "Dry run", "Status", "Checked", "Updated", "Conflicts", ""],
        page.items.map((r) => h("tr", {}, h("td", {}, when(r.started_at)), h("td", {}, r.run_type + " " + r.entity_type),
          h("td", {}, r.dry_run ? "yes" : "no"), h("td", {}, r.status), h("td", { class: "num" }, text(r.total_records)),
          h("td", { class: "num" }, text(r.records_updated)), h("td", { class: "num" }, text(r.conflicts_detected)),
          h("td", {}, h("button", { type: "button", onclick: () => watch(r.id) }, "Report")))), "No runs yet."));
    }
    view.append(h("form", { class: "inline", onsubmit: async (e) => {
      e.preventDefault();
      out.replaceChildren(h("p", {}, "starting…"));
      try {
        const started = await api("POST", "/reconcile", { entity_type: entity.value, dry_run: dry.checked });
        await watch(started.run.id);
      } catch (error) { out.replaceChildren(failure(error)); }
    } }, field("reconcile-entity", "Records", entity), field("reconcile-dry", "Dry run (write nothing)", dry),
      h("button", { type: "submit", class: "primary" }, "Start")), out, h("h3", {}, "Recent runs"), runs);
    await listRuns();
  }

  async function findCustomers(typed) {
    const v = typed.trim();
    if (UUID_RE.test(v) || v.startsWith("ban:")) return [{ customer_id: v }];
    try {
      await api("GET", "/customers/" + encodeURIComponent("ban:" + v) + "/status");
      return [{ customer_id: "ban:" + v }];
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 404 && error.status !== 400) throw error;
      if (error.missingRoute) throw error;
    }
    // Not a BAN: look for the name, page by page (up to 5,000 customers).
    const found = [];
    let cursor = null;
    for (let i = 0; i < 10; i++) {
      const page = await api("GET", "/customers" + query({ limit: 500, cursor }));
      for (const c of page.items) if ((c.company_name || "").toLowerCase().includes(v.toLowerCase())) found.push(c);
      cursor = page.next_cursor;
      if (!cursor || found.length >= 50) break;
    }
    return found;
  }

  function fieldState(f) {
    if (!f.mapped) return h("span", { class: "badge" }, "no longer mapped");
    if (f.is_in_conflict) return h("span", { class: "badge bad" }, "conflict");
    if (!f.last_synced_at) return h("span", { class: "badge" }, "not synced yet");
    return h("span", { class: "badge good" }, "synced");
  }

  async function showCustomer(out, ref) {
    out.replaceChildren(h("p", {}, "loading…"));
    const id = encodeURIComponent(ref);
    const [status, logs] = await Promise.all([api("GET", "/customers/" + id + "/status"), api("GET", "/customers/" + id + "/logs?limit=20")]);
    out.replaceChildren(h("h3", {}, status.company_name || status.customer_id),
      h("dl", { class: "cards" }, card("Open conflicts", status.open_conflicts, "bad"),
        card("HubSpot company", status.links.hubspot_company_id), card("HubSpot contact", status.links.hubspot_contact_id),
        card("Sync enabled", status.hubspot_sync_enabled === false ? "no" : "yes")),
      h("p", { class: "muted" }, "Customer " + status.customer_id + "; last to HubSpot " + when(status.last_synced_to_hubspot) +
        ", last from HubSpot " + when(status.last_synced_from_hubspot)),
      h("h3", {}, "Fields"),
      table("Fields", ["Field", "WARP's value", "HubSpot's value", "Direction / rule", "Last synced", "State"],
        status.fields.map((f) => h("tr", {}, h("td", {}, f.field, h("br"), h("span", { class: "muted" }, f.entity_type)),
          h("td", { class: "value" }, text(f.warp_value)), h("td", { class: "value" }, text(f.hubspot_value)),
          h("td", {}, text(f.sync_direction) + " / " + text(f.conflict_resolution)), h("td", {}, when(f.last_synced_at)),
          h("td", {}, fieldState(f)))),
        "No fields recorded."),
      h("h3", {}, "Sync log"),
      table("Log, newest first", ["Started", "Operation", "Direction", "Status", "Fields", "Error"],
        logs.items.map((l) => h("tr", {}, h("td", {}, when(l.started_at)), h("td", {}, l.entity_type + " " + l.operation),
          h("td", {}, l.direction), h("td", {}, l.status), h("td", { class: "value" }, text(l.fields_synced)),
          h("td", { class: "value" }, text(l.error_message)))), "No log entries."));
  }

  async function customer(view) {
    view.append(h("h2", {}, "A customer"));
    const input = h("input", { type: "search", required: true, autocomplete: "off", placeholder: "B-1234, a name, or an id" });
    const out = h("div");
    view.append(h("form", { class: "inline", role: "search", onsubmit: async (e) => {
      e.preventDefault();
      out.replaceChildren(h("p", {}, "searching…"));
      try {
        const found = await findCustomers(input.value);
        if (found.length === 1) await showCustomer(out, found[0].customer_id);
        else out.replaceChildren(table("Matching customers", ["Customer", "BAN", "States"],
          found.map((c) => h("tr", {}, h("td", {}, h("button", { type: "button", onclick: () => showCustomer(out, c.customer_id).catch((x) => out.append(failure(x))) }, c.company_name || c.customer_id)),
            h("td", { class: "mono" }, text(c.ban)), h("td", {}, (c.states || []).join(", ")))), "No customer matches."));
      } catch (error) { out.replaceChildren(routeMissing(error, "Searching by BAN or name")); }
    } }, field("customer-search", "BAN, name or id", input), h("button", { type: "submit" }, "Search")), out);
  }

  async function pause(view) {
    view.append(h("h2", {}, "Pause / resume"),
      h("p", {}, "While paused, nothing is written to WARP or HubSpot; changes wait and run on resume."));
    const state = h("p", { id: "pause-now", role: "status" });
    const reason = h("input", { type: "text", maxlength: 500, autocomplete: "off" });
    const out = h("div");
    const show = (p) => {
      state.replaceChildren(p.paused ? h("span", { class: "paused" }, "PAUSED" + (p.reason ? ": " + p.reason : "") +
        (p.since ? " (since " + when(p.since) + (p.by ? " by " + p.by : "") + ")" : "")) : h("span", { class: "ok" }, "Running"));
      state.dataset.paused = p.paused ? "true" : "false";
    };
    try { show((await api("GET", "/customers?limit=1")).pause); } catch (error) { out.append(routeMissing(error, "The pause state")); }
    const act = async (path, body) => {
      out.replaceChildren();
      try {
        const result = await api("POST", path, body);
        show(result.pause);
        if (result.drained) out.append(h("p", {}, "Handed on: " + result.drained.events + " webhook events, " +
          result.drained.customers + " customers, " + result.drained.queue_items + " queue items, " + result.drained.runs + " runs."));
        announce(result.pause.paused ? "Sync paused" : "Sync resumed");
      } catch (error) { out.append(routeMissing(error, "Pausing and resuming")); }
    };
    view.append(state, h("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); act("/pause", { reason: reason.value.trim() || null }); } },
      field("pause-reason", "Reason", reason), h("button", { type: "submit", class: "primary" }, "Pause"),
      h("button", { type: "button", onclick: () => act("/resume") }, "Resume")), out);
  }

  // --- navigation and sign-in ---------------------------------------------------------
  const VIEWS = { overview, conflicts, failures, changes, reconcile, customer, pause };
  const current = () => (location.hash.slice(1) in VIEWS ? location.hash.slice(1) : "overview");

  async function render() {
    clearTimeout(refreshTimer);
    if (!sessionStorage.getItem(TOKEN_KEY)) return signOut();
    $("sign-in").hidden = true;
    $("nav").hidden = false;
    const name = current();
    for (const link of document.querySelectorAll("nav a")) {
      if (link.dataset.view === name) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    const view = h("section", { id: "view", "data-view": name, "aria-busy": "true" });
    $("view").replaceWith(view);
    document.title = name[0].toUpperCase() + name.slice(1) + " — WARP ⇄ HubSpot sync console";
    try { await VIEWS[name](view); } catch (error) { view.append(failure(error)); }
    // A refused token signed out midway: nothing the view went on to add stays.
    if (!sessionStorage.getItem(TOKEN_KEY)) view.replaceChildren();
    view.setAttribute("aria-busy", "false");
  }

  function signOut(message) {
    clearTimeout(refreshTimer);
    sessionStorage.removeItem(TOKEN_KEY);
    $("nav").hidden = true;
    $("view").replaceChildren();
    $("sign-in").hidden = false;
    $("sign-in-error").textContent = message || "";
    $("token").focus();
  }

  $("sign-in-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    render().then(() => $("main").focus());
  });
  $("sign-out").addEventListener("click", () => signOut("Token forgotten."));
  window.addEventListener("hashchange", () => render().then(() => $("main").focus()));
  render();
})();
