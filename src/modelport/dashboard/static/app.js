// The Modelport dashboard: signs in (the admin key is posted once, in a body, and kept nowhere
// in the page), then reads the admin JSON API with the session cookie. Every value from the
// server is put in the page as text (textContent), never as HTML: request bodies and key
// names are whatever clients sent.
(function () {
  "use strict";

  const Charts = window.ModelportCharts;
  const RED = "#dc2626";
  const BLUE = "#2563eb";
  const REFRESH_MS = 30000;
  const state = { panel: "overview", since: "1h", cursor: null, openMode: false };

  // --- the page ------------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (value === undefined || value === null) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name === "onclick") node.addEventListener("click", value);
      else if (name.startsWith("data-")) node.dataset[camel(name.slice(5))] = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) {
        node.append(child instanceof Node ? child : String(child));
      }
    }
    return node;
  }

  function camel(name) {
    return name.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
  }

  function cell(field, value, extra) {
    return el("td", { "data-field": field, class: extra }, value);
  }

  function dash(value, format) {
    return value === null || value === undefined ? "\u2014" : format(value);
  }

  const fmt = {
    int: (v) => dash(v, (n) => String(n)),
    ms: (v) => dash(v, (n) => (n >= 100 ? n.toFixed(0) : n.toFixed(1))),
    usd: (v) => dash(v, (n) => n.toFixed(6)),
    pct: (v) => dash(v, (r) => (r * 100).toFixed(1) + "%"),
    time: (v) => dash(v, (iso) => new Date(iso).toLocaleString()),
  };

  function showError(error) {
    if (error instanceof SignedOut) return;
    $("status").textContent = error.message || String(error);
    $("status").hidden = false;
  }

  function clearError() {
    $("status").hidden = true;
    $("status").textContent = "";
  }

  // --- the server ----------------------------------------------------------------------

  class SignedOut extends Error {}

  async function api(path, options) {
    const method = (options && options.method) || "GET";
    const headers = { Accept: "application/json", "X-Modelport-Dashboard": "1" };
    const init = { method, headers, credentials: "same-origin", cache: "no-store" };
    if (options && options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    const reply = await fetch(path, init);
    if (reply.status === 401) {
      signedOut();
      throw new SignedOut("signed out");
    }
    const data = await reply.json().catch(() => null);
    if (!reply.ok) {
      const message = data && data.error && data.error.message;
      throw new Error(message || "HTTP " + reply.status);
    }
    return data;
  }

  async function signIn(key) {
    const reply = await fetch("/dashboard/login", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ key }),
      credentials: "same-origin",
      cache: "no-store",
    });
    if (!reply.ok) return false;
    const session = await reply.json().catch(() => ({}));
    signedIn(session.role);
    return true;
  }

  // A reviewer (signed in with a reviewer's key) sees the review queue only.
  function signedIn(role) {
    const reviewer = role === "reviewer";
    for (const button of document.querySelectorAll("#tabs button")) {
      button.hidden = reviewer && button.dataset.panel !== "reviews";
    }
    if (reviewer) state.panel = "reviews";
    $("login").hidden = true;
    $("login-error").hidden = true;
    $("app").hidden = false;
    $("tabs").hidden = false;
    $("logout").hidden = state.openMode;
    show(state.panel);
  }

  function signedOut() {
    $("app").hidden = true;
    $("tabs").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    $("login-key").value = "";
    $("login-key").focus();
  }

  // --- panels --------------------------------------------------------------------------

  const loaders = {
    overview: loadOverview,
    routes: loadRoutes,
    keys: loadKeys,
    requests: () => loadRequests(false),
    feedback: loadFeedback,
    models: loadModels,
    batches: loadBatches,
    switches: loadSwitches,
    reviews: loadReviews,
  };

  function show(panel) {
    state.panel = panel;
    for (const button of document.querySelectorAll("#tabs button")) {
      button.classList.toggle("active", button.dataset.panel === panel);
    }
    for (const name of Object.keys(loaders)) {
      $("panel-" + name).hidden = name !== panel;
    }
    return load(panel);
  }

  async function load(panel) {
    clearError();
    try {
      await loaders[panel]();
    } catch (error) {
      showError(error);
    }
  }

  function total(name, label, value) {
    return [el("dt", { text: label }), el("dd", { id: "total-" + name, text: value })];
  }

  async function loadOverview() {
    const stats = await api("/admin/stats?since=" + encodeURIComponent(state.since));
    const t = stats.totals;
    $("overview-totals").replaceChildren(
      ...total("requests", "Requests", fmt.int(t.requests)),
      ...total("errors", "Errors", fmt.int(t.errors)),
      ...total("error-rate", "Error rate", fmt.pct(t.error_rate)),
      ...total("p50", "p50 ms", fmt.ms(t.p50_ms)),
      ...total("p99", "p99 ms", fmt.ms(t.p99_ms)),
      ...total("cost", "Cost (USD)", fmt.usd(t.cost_usd)),
    );
    $("overview-note").hidden = !stats.truncated;
    $("overview-note").textContent = "This window holds more requests than are read at once: "
      + "the figures cover the newest of them.";
    const column = (name) => stats.data.map((b) => b[name]);
    const xs = stats.data.map((b) => Date.parse(b.start) / 1000);
    Charts.time($("chart-traffic"), [{ label: "requests" }, { label: "errors", color: RED }],
      [xs, column("requests"), column("errors")]);
    Charts.time($("chart-latency"), [{ label: "p50" }, { label: "p99", color: RED }],
      [xs, column("p50_ms"), column("p99_ms")]);
    Charts.time($("chart-cost"), [{ label: "cost USD", color: "#16a34a" }],
      [xs, column("cost_usd")]);
  }

  function breaker(target) {
    const text = target.breaker === "open" && target.retry_in_s
      ? "open (" + target.retry_in_s.toFixed(0) + " s)" : target.breaker;
    return el("span", { class: "breaker breaker-" + target.breaker, text });
  }

  async function loadRoutes() {
    const reply = await api("/admin/routes");
    const rows = [];
    const labels = [];
    const p50 = [];
    const p99 = [];
    const errors = [];
    for (const route of reply.data) {
      rows.push(el("tr", { class: "route-row", "data-route": route.route },
        cell("route", route.route, "name"), cell("target", "all targets"),
        cell("model_version", ""), cell("breaker", ""), cell("in_flight", ""),
        cell("queued", ""), cell("requests", fmt.int(route.requests)),
        cell("error_rate", fmt.pct(route.error_rate)), cell("p50_ms", fmt.ms(route.p50_ms)),
        cell("p99_ms", fmt.ms(route.p99_ms)), cell("canary", "")));
      const canary = route.canary;
      for (const target of route.targets) {
        const isCanary = canary && canary.target === target.target;
        rows.push(el("tr", { "data-route": route.route, "data-target": target.target },
          cell("route", ""), cell("target", target.target),
          cell("model_version", target.model_version), cell("breaker", breaker(target)),
          cell("in_flight", fmt.int(target.in_flight)), cell("queued", fmt.int(target.queued)),
          cell("requests", fmt.int(target.requests)),
          cell("error_rate", fmt.pct(target.error_rate)),
          cell("p50_ms", fmt.ms(target.p50_ms)), cell("p99_ms", fmt.ms(target.p99_ms)),
          cell("canary", isCanary ? canary.state.replace("_", " ") + " (" + canary.percent
            + "%)" : "", isCanary && canary.reason ? "canary" : undefined)));
        if (isCanary && canary.reason) rows[rows.length - 1].title = canary.reason;
        labels.push(route.route + " \u00b7 " + target.target);
        p50.push(target.p50_ms);
        p99.push(target.p99_ms);
        errors.push(target.error_rate === null ? null : target.error_rate * 100);
      }
    }
    $("routes-table").tBodies[0].replaceChildren(...rows);
    await loadShadows(reply.data.filter((route) => route.shadow));
    Charts.bars($("chart-routes-latency"), labels,
      [{ label: "p99", values: p99, color: RED }, { label: "p50", values: p50, color: BLUE }]);
    Charts.bars($("chart-routes-errors"), labels,
      [{ label: "error rate %", values: errors, color: RED }]);
  }

  function limits(key) {
    const parts = [];
    if (key.rpm) parts.push(key.rpm + " rpm");
    if (key.tpm) parts.push(key.tpm + " tpm");
    if (key.max_concurrency) parts.push(key.max_concurrency + " at once");
    return parts.length ? parts.join(", ") : "none";
  }

  function keyState(key) {
    if (key.revoked_at) return "revoked";
    if (key.expires_at && Date.parse(key.expires_at) <= Date.now()) return "expired";
    return "active";
  }

  function revokeCell(key) {
    const td = el("td", { "data-field": "actions" });
    if (keyState(key) === "revoked") return td;
    if (key.id.startsWith("cfg_")) {
      td.append(el("span", { class: "muted", text: "config file" }));
      return td;
    }
    const ask = () => td.replaceChildren(
      el("span", { class: "confirm-text", text: "Revoke " + key.name + "? Its next request fails." }),
      el("button", { type: "button", class: "danger confirm-revoke", text: "Confirm revoke",
        onclick: () => revoke(key, td) }),
      el("button", { type: "button", class: "cancel-revoke", text: "Cancel",
        onclick: () => td.replaceChildren(button()) }));
    const button = () => el("button", { type: "button", class: "revoke", text: "Revoke",
      onclick: ask });
    td.append(button());
    return td;
  }

  async function revoke(key, td) {
    td.replaceChildren(el("span", { class: "muted", text: "revoking\u2026" }));
    try {
      await api("/admin/keys/" + encodeURIComponent(key.id), { method: "DELETE" });
    } catch (error) {
      showError(error);
    }
    await load("keys");
  }

  async function loadKeys() {
    const [keys, usage] = await Promise.all([
      api("/admin/keys"), api("/admin/usage?by=key&period=month"),
    ]);
    const spent = new Map(usage.data.map((u) => [u.key, u]));
    const rows = keys.data.map((key) => {
      const used = spent.get(key.id) || { requests: 0, cost_usd: 0 };
      const budget = key.budget_usd === null ? "none"
        : "$" + key.budget_usd + " a " + key.budget_period;
      return el("tr", { "data-key-id": key.id },
        cell("name", key.name, "name"), cell("id", key.id, "mono"),
        cell("prefix", key.prefix, "mono"), cell("environment", key.environment),
        cell("routes", key.routes ? key.routes.join(", ") : "all"),
        cell("requests", fmt.int(used.requests)), cell("cost_usd", fmt.usd(used.cost_usd)),
        cell("limits", limits(key)), cell("budget", budget),
        cell("state", keyState(key)), revokeCell(key));
    });
    $("keys-table").tBodies[0].replaceChildren(...rows);
    const costly = usage.data.filter((u) => u.key);
    const names = new Map(keys.data.map((k) => [k.id, k.name]));
    Charts.bars($("chart-keys-cost"), costly.map((u) => names.get(u.key) || u.key),
      [{ label: "cost USD", values: costly.map((u) => u.cost_usd), color: "#16a34a" }]);
  }

  function requestQuery() {
    const form = new FormData($("request-filters"));
    const params = new URLSearchParams({ limit: "50" });
    for (const name of ["route", "key", "status", "since"]) {
      const value = String(form.get(name) || "").trim();
      if (value) params.set(name, value);
    }
    return params;
  }

  async function loadRequests(more) {
    const params = requestQuery();
    if (more && state.cursor) params.set("cursor", state.cursor);
    const page = await api("/admin/requests?" + params.toString());
    const rows = page.data.map((r) => {
      const tokens = r.prompt_tokens === null ? "\u2014"
        : r.prompt_tokens + " + " + (r.completion_tokens || 0);
      const row = el("tr", { class: "clickable", "data-request-id": r.request_id },
        cell("created_at", fmt.time(r.created_at)), cell("request_id", r.request_id, "mono"),
        cell("route", r.route || "\u2014"), cell("target", r.target || "\u2014"),
        cell("key_id", r.key_id || "\u2014", "mono"),
        cell("status", String(r.status), "status-" + String(r.status)[0] + "xx"),
        cell("latency_ms", fmt.ms(r.latency_ms)), cell("tokens", tokens),
        cell("cost_usd", fmt.usd(r.cost_usd)));
      row.addEventListener("click", () => showRequest(r.request_id).catch(showError));
      return row;
    });
    const body = $("requests-table").tBodies[0];
    if (more) body.append(...rows);
    else body.replaceChildren(...rows);
    state.cursor = page.next_cursor;
    $("requests-more").hidden = !page.next_cursor;
  }

  function field(label, value) {
    return [el("dt", { text: label }), el("dd", { text: value })];
  }

  function latencySplit(r) {
    const parts = [["queue", r.queue_ms], ["upstream", r.upstream_ms], ["overhead", r.overhead_ms]];
    const sum = parts.reduce((acc, [, v]) => acc + (v || 0), 0) || 1;
    const bar = el("div", { class: "split-bar" });
    const legend = el("ul", { class: "split-legend" });
    for (const [name, value] of parts) {
      const piece = el("span", { class: "split-" + name, title: name });
      piece.style.width = ((100 * (value || 0)) / sum).toFixed(2) + "%";
      bar.append(piece);
      legend.append(el("li", { class: "split-" + name, text: name + " " + fmt.ms(value) + " ms" }));
    }
    return el("div", { class: "latency-split" }, bar, legend);
  }

  function table(headings, rows) {
    return el("table", {},
      el("thead", {}, el("tr", {}, ...headings.map((h) => el("th", { text: h })))),
      el("tbody", {}, ...rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", { text: c }))))));
  }

  function body(label, text) {
    return [el("h4", { text: label }),
      text === null ? el("p", { class: "muted", text: "Not captured (the route does not set capture: true, or it was deleted)." })
        : el("pre", { class: "body", text })];
  }

  async function showRequest(id) {
    const r = await api("/admin/requests/" + encodeURIComponent(id));
    const detail = $("request-detail");
    const tokens = r.prompt_tokens === null ? "\u2014"
      : r.prompt_tokens + " prompt + " + (r.completion_tokens || 0) + " completion";
    detail.replaceChildren(
      el("div", { class: "toolbar" }, el("h3", { text: "Request " + r.request_id }),
        el("button", { type: "button", id: "request-detail-close", text: "Close",
          onclick: () => { detail.hidden = true; } })),
      el("dl", { class: "fields" },
        ...field("Time", fmt.time(r.created_at)), ...field("Route", r.route || "\u2014"),
        ...field("Target", r.target || "\u2014"),
        ...field("Model version", r.model_version || "\u2014"),
        ...field("Key", r.key_id || "\u2014"), ...field("Status", String(r.status)),
        ...field("Error", r.error_code || "\u2014"), ...field("Stream", r.stream ? "yes" : "no"),
        ...field("Attempts", fmt.int(r.attempts)), ...field("Tokens", tokens),
        ...field("Cost (USD)", fmt.usd(r.cost_usd)), ...field("Latency ms", fmt.ms(r.latency_ms)),
        ...field("Config version", r.config_version)),
      el("h4", { text: "Latency split" }), latencySplit(r),
      el("h4", { text: "Attempts" }),
      r.attempt_log.length
        ? table(["Target", "Status", "Error class", "ms"], r.attempt_log.map((a) =>
          [a.target, String(a.status), a.error_class || "\u2014", fmt.ms(a.ms)]))
        : el("p", { class: "muted", text: "One attempt, answered." }),
      el("h4", { text: "Feedback" }),
      r.feedback.length
        ? table(["Outcome", "Score", "Correction", "Comment", "Time"], r.feedback.map((f) =>
          [f.outcome, f.score === null ? "\u2014" : String(f.score), f.correction || "\u2014",
            f.comment || "\u2014", fmt.time(f.created_at)]))
        : el("p", { class: "muted", text: "None." }),
      ...body("Request body", r.request_body), ...body("Response body", r.response_body));
    detail.hidden = false;
    detail.scrollIntoView({ block: "nearest" });
  }

  async function loadFeedback() {
    const reply = await api("/admin/feedback?since=7d");
    const label = (f) => (f.route || "?") + " \u00b7 " + (f.model_version || "?");
    $("feedback-table").tBodies[0].replaceChildren(...reply.data.map((f) =>
      el("tr", { "data-route": f.route || "", "data-model-version": f.model_version || "" },
        cell("route", f.route || "\u2014"), cell("model_version", f.model_version || "\u2014"),
        cell("accepted", fmt.int(f.accepted)), cell("edited", fmt.int(f.edited)),
        cell("rejected", fmt.int(f.rejected)), cell("total", fmt.int(f.total)),
        cell("correction_rate", fmt.pct(f.correction_rate)))));
    Charts.bars($("chart-feedback"), reply.data.map(label),
      [{ label: "correction rate %", values: reply.data.map((f) => f.correction_rate * 100),
        color: "#9333ea" }]);
  }

  async function loadShadows(routes) {
    $("shadows").hidden = routes.length === 0;
    const found = await Promise.all(routes.map(
      (route) => api("/admin/routes/" + encodeURIComponent(route.route) + "/shadow")));
    $("shadows-table").tBodies[0].replaceChildren(...found.map((s) =>
      el("tr", { "data-route": s.route },
        cell("route", s.route, "name"), cell("target", s.target, "mono"),
        cell("percent", s.percent === null ? "-" : s.percent + "%"),
        cell("shadows", fmt.int(s.shadows)), cell("errors", fmt.int(s.errors)),
        cell("match_rate", fmt.pct(s.match_rate)),
        cell("p50", fmt.ms(s.shadow.p50_ms) + " / " + fmt.ms(s.served.p50_ms)),
        cell("cost_usd", fmt.usd(s.shadow.cost_usd)))));
  }

  // --- the model catalogue -------------------------------------------------------------

  async function loadModels() {
    const models = await api("/admin/models");
    const rows = models.data.map((m) => el("tr", { "data-model": m.id },
      cell("id", m.id, "name"), cell("target", m.provider + "/" + m.model, "mono"),
      cell("owner", m.owner || "-"), cell("status", m.status, "status-" + m.status),
      cell("routes", m.routes.length ? m.routes.join(", ") : "-"),
      cell("requests", fmt.int(m.last_day.requests)),
      cell("error_rate", fmt.pct(m.last_day.error_rate)),
      cell("cost_usd", fmt.usd(m.last_day.cost_usd)),
      cell("retire_at", m.retire_at ? new Date(m.retire_at).toLocaleDateString() : "-"),
      cell("successor", m.successor || "-")));
    $("models-table").tBodies[0].replaceChildren(...rows);
  }

  // --- batches -----------------------------------------------------------------------

  async function loadBatches() {
    const batches = await api("/admin/batches");
    const rows = batches.data.map((b) => {
      const counts = b.request_counts;
      const finished = counts.completed + counts.failed;
      const bar = el("progress", { max: String(counts.total || 1), value: String(finished) });
      const status = b.status + (b.paused_reason ? " (" + b.paused_reason + ")" : "");
      return el("tr", { "data-batch": b.id },
        cell("id", b.id, "mono"), cell("key", b.key_id || "-", "mono"),
        cell("endpoint", b.endpoint, "mono"),
        cell("created", new Date(b.created_at * 1000).toLocaleString()),
        cell("status", status, "status-" + b.status),
        el("td", { "data-field": "progress" }, bar,
          " " + Math.round(100 * finished / (counts.total || 1)) + "%"),
        cell("completed", fmt.int(counts.completed)), cell("failed", fmt.int(counts.failed)),
        cell("total", fmt.int(counts.total)));
    });
    $("batches-table").tBodies[0].replaceChildren(...rows);
  }

  // --- kill switches -------------------------------------------------------------------

  async function loadSwitches() {
    const switches = await api("/admin/switches");
    const rows = switches.data.map((s) => el("tr", { "data-switch": s.scope + ":" + (s.name || "") },
      cell("scope", s.scope), cell("name", s.name || "everything", "mono"),
      cell("behaviour", s.behaviour + (s.fallback_route ? " \u2192 " + s.fallback_route : "")),
      cell("message", s.message), cell("reason", s.reason), cell("actor", s.actor),
      cell("since", new Date(s.since).toLocaleString()),
      el("td", { "data-field": "actions" }, el("button", { type: "button", class: "turn-on",
        text: "Turn on", onclick: () => setSwitch({ scope: s.scope, name: s.name || "",
          state: "on", reason: "turned on in the dashboard" }) }))));
    $("switches-table").tBodies[0].replaceChildren(...rows);
  }

  async function setSwitch(body) {
    try {
      await api("/admin/switches", { method: "POST", body });
    } catch (error) {
      showError(error);
      return;
    }
    await load("switches");
  }

  function switchForm(form) {
    const data = new FormData(form);
    const body = { scope: data.get("scope"), state: "off", behaviour: data.get("behaviour"),
      message: data.get("message"), reason: data.get("reason") };
    if (body.scope !== "all") body.name = data.get("name").trim();
    if (body.behaviour === "fallback") body.fallback_route = data.get("fallback_route").trim();
    return body;
  }

  // --- the review queue ----------------------------------------------------------------

  function answerText(answer) {
    const choice = answer && answer.choices && answer.choices[0];
    if (!choice) return "";
    if (choice.message) return choice.message.content || "";
    return choice.text || "";
  }

  function askedText(request) {
    const messages = (request && request.messages) || [];
    const last = messages[messages.length - 1];
    if (last && typeof last.content === "string") return last.content;
    return request && typeof request.prompt === "string" ? request.prompt : "";
  }

  async function loadReviews() {
    const data = new FormData($("review-filters"));
    const query = new URLSearchParams();
    if (data.get("status")) query.set("status", data.get("status"));
    if (data.get("route").trim()) query.set("route", data.get("route").trim());
    const reviews = await api("/admin/reviews?" + query.toString());
    const rows = reviews.data.map((r) => {
      const text = el("textarea", { class: "review-answer", rows: "4" });
      text.value = answerText(r.answer);
      text.readOnly = r.status !== "pending";
      const reason = el("input", { type: "text", class: "review-reason",
        placeholder: "reason" });
      const decision = r.status === "pending"
        ? el("td", { "data-field": "decision" }, reason,
          el("button", { type: "button", class: "approve", text: "Approve",
            onclick: () => decide(r, "approve", text.value, reason.value) }),
          el("button", { type: "button", class: "reject danger", text: "Reject",
            onclick: () => decide(r, "reject", null, reason.value) }))
        : cell("decision", (r.decided_by || "") + (r.decision_reason
          ? ": " + r.decision_reason : ""));
      return el("tr", { "data-review": r.id },
        cell("created", fmt.time(r.created_at)), cell("route", r.route),
        cell("why", r.held_because), cell("asked", askedText(r.request)),
        el("td", { "data-field": "answer" }, text),
        cell("status", r.status + (r.edited ? " (edited)" : "")), decision);
    });
    $("reviews-table").tBodies[0].replaceChildren(...rows);
  }

  async function decide(review, decision, text, reason) {
    const body = { decision, reason };
    if (decision === "approve" && text !== answerText(review.answer)) body.answer = text;
    try {
      await api("/admin/reviews/" + encodeURIComponent(review.id), { method: "POST", body });
    } catch (error) {
      showError(error);
      return;
    }
    await load("reviews");
  }

  // --- wiring --------------------------------------------------------------------------

  function wire() {
    $("login-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const input = $("login-key");
      const key = input.value;
      input.value = "";
      $("login-error").hidden = true;
      if (!(await signIn(key))) $("login-error").hidden = false;
    });
    $("logout").addEventListener("click", async () => {
      await fetch("/dashboard/logout", { method: "POST", credentials: "same-origin",
        headers: { Accept: "application/json", "X-Modelport-Dashboard": "1" } });
      signedOut();
    });
    for (const button of document.querySelectorAll("#tabs button")) {
      button.addEventListener("click", () => show(button.dataset.panel));
    }
    for (const button of document.querySelectorAll("#range button")) {
      button.addEventListener("click", () => {
        state.since = button.dataset.since;
        for (const b of document.querySelectorAll("#range button")) {
          b.classList.toggle("active", b === button);
        }
        load("overview");
      });
    }
    for (const button of document.querySelectorAll("[data-refresh]")) {
      button.addEventListener("click", () => load(button.dataset.refresh));
    }
    $("request-filters").addEventListener("submit", (event) => {
      event.preventDefault();
      $("request-detail").hidden = true;
      load("requests");
    });
    $("requests-more").addEventListener("click", () => loadRequests(true).catch(showError));
    $("review-filters").addEventListener("submit", (event) => {
      event.preventDefault();
      load("reviews");
    });
    $("switch-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      clearError();
      await setSwitch(switchForm(event.target));
    });
    // The live panels refresh themselves; keys and feedback (whose reads are audited or
    // heavier) only when asked.
    setInterval(() => {
      if (!document.hidden && !$("app").hidden
        && (state.panel === "overview" || state.panel === "routes")) {
        load(state.panel);
      }
    }, REFRESH_MS);
  }

  async function start() {
    wire();
    try {
      const reply = await fetch("/dashboard/session", { credentials: "same-origin",
        cache: "no-store", headers: { Accept: "application/json" } });
      const session = await reply.json();
      state.openMode = Boolean(session.open_mode);
      if (session.signed_in) return signedIn(session.role);
      if (state.openMode && (await signIn(""))) return undefined;
    } catch (error) {
      showError(error);
    }
    return signedOut();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
