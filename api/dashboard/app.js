// adstream live dashboard: one GraphQL query for the current state, then graphql-transport-ws subscriptions that
// update the page in place. No dependencies: served from the adstream binary, works offline.
"use strict";

const state = {
  token: null,
  campaigns: new Map(),   // campaignId -> settings
  daily: new Map(),       // campaignId -> latest DAILY metrics row
  alerts: [],             // newest first
  alertIds: new Set(),
  fatigue: new Map(),     // creativeId -> assessment
  credits: [],
};
const MAX_ALERTS = 200;
const MODEL_COLOURS = ["#2f6fde", "#d98b00", "#2f9e5b", "#8e44ad", "#d33a2c", "#16a2b8", "#6b7585"];

const $ = (selector) => document.querySelector(selector);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const child of children) node.append(child);
  return node;
};
const svgEl = (tag, attrs = {}) => {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
};
const money = (micros, currency) => micros == null ? "–" :
  (micros / 1e6).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 }) + " " + (currency || "");
const pct = (x) => x == null ? "–" : (x * 100).toFixed(2) + "%";
const num = (x) => x == null ? "–" : Number(x).toLocaleString("en-US", { maximumFractionDigits: 2 });

function setStatus(text, stateName) {
  const node = $("#status");
  node.textContent = text;
  node.dataset.state = stateName;
}

// --- GraphQL over HTTP -------------------------------------------------------------------------------------------
async function query(text, variables = {}) {
  const response = await fetch("/graphql", {
    method: "POST",
    headers: { "Content-Type": "application/json", "Authorization": "Bearer " + state.token },
    body: JSON.stringify({ query: text, variables }),
  });
  if (response.status === 401) throw new Error("unauthorized");
  const body = await response.json();
  if (body.errors && body.errors.length) throw new Error(body.errors[0].message);
  return body.data;
}

const METRICS_FIELDS = `campaignId granularity windowStart windowEnd currency impressions clicks spendMicros conversions
  revenueMicros ctr cpcMicros roas revision emittedAt`;
const ALERT_FIELDS = "alertId campaignId creativeId kind severity previousSeverity rule observed threshold message eventTime";
const FATIGUE_FIELDS = `creativeId campaignId status score baselineCtr currentCtr exposure impressions clicks
  decay { ctrAtZero lambda fromExposure } daysRemaining recentPoints { impressions clicks exposure }`;

const SNAPSHOT = `{
  campaigns { campaignId name status currency dailyBudgetMicros }
  latestMetrics(granularity: DAILY) { ${METRICS_FIELDS} }
  alertHistory(limit: ${MAX_ALERTS}) { ${ALERT_FIELDS} }
  creativeFatigue { ${FATIGUE_FIELDS} }
  attributionCredits { campaignId model conversions revenueMicros }
}`;
const SLOW = `{
  campaigns { campaignId name status currency dailyBudgetMicros }
  attributionCredits { campaignId model conversions revenueMicros }
}`;

// --- applying data -------------------------------------------------------------------------------------------------
function applyMetrics(row) {
  if (row.granularity !== "DAILY") return;
  const current = state.daily.get(row.campaignId);
  if (current && (row.windowStart < current.windowStart ||
      (row.windowStart === current.windowStart && row.revision <= current.revision))) return;
  state.daily.set(row.campaignId, row);
  renderRow(row.campaignId, true);
}

function applyAlert(alert, live) {
  if (state.alertIds.has(alert.alertId + "|" + alert.severity)) return;
  state.alertIds.add(alert.alertId + "|" + alert.severity);
  if (live) state.alerts.unshift(alert); else state.alerts.push(alert);
  if (state.alerts.length > MAX_ALERTS) state.alerts.length = MAX_ALERTS;
  renderAlerts();
}

function applyFatigue(assessment) {
  state.fatigue.set(assessment.creativeId, assessment);
  renderFatigue();
}

function applySlow(data) {
  state.campaigns = new Map(data.campaigns.map((c) => [c.campaignId, c]));
  state.credits = data.attributionCredits;
  for (const id of new Set([...state.campaigns.keys(), ...state.daily.keys()])) renderRow(id, false);
  renderAttribution();
}

// --- rendering -----------------------------------------------------------------------------------------------------
function cell(field, value, text, className = "num") {
  return el("td", { "data-field": field, "data-value": value == null ? "" : String(value), class: className }, text);
}

function pacing(row, settings) {
  const budget = settings && settings.dailyBudgetMicros;
  if (!budget || !row) return el("td", { "data-field": "pacing" }, el("span", { class: "muted" }, "no daily budget"));
  const share = row.spendMicros / budget;
  const bar = el("div", { class: "bar" + (share >= 1 ? " over" : share >= 0.9 ? " near" : "") },
    el("span", { style: `width:${Math.min(share, 1) * 100}%` }));
  return el("td", { "data-field": "pacing", "data-value": String(share) },
    el("div", { class: "pacing" }, bar, el("span", { class: "bar-label" }, `${(share * 100).toFixed(0)}% of ${money(budget, settings.currency)}`)));
}

function renderRow(campaignId, flash) {
  const tbody = $("#campaigns tbody");
  const row = state.daily.get(campaignId);
  const settings = state.campaigns.get(campaignId);
  const currency = (row && row.currency) || (settings && settings.currency);
  const tr = el("tr", { "data-campaign-id": campaignId, "data-revision": row ? String(row.revision) : "" },
    el("td", { "data-field": "name", title: campaignId }, settings ? settings.name : campaignId),
    el("td", { "data-field": "status" }, settings ? settings.status : "–"),
    cell("impressions", row && row.impressions, num(row && row.impressions)),
    cell("clicks", row && row.clicks, num(row && row.clicks)),
    cell("ctr", row && row.ctr, pct(row && row.ctr)),
    cell("spendMicros", row && row.spendMicros, money(row && row.spendMicros, currency)),
    cell("cpcMicros", row && row.cpcMicros, money(row && row.cpcMicros, currency)),
    cell("conversions", row && row.conversions, num(row && row.conversions)),
    cell("roas", row && row.roas, row && row.roas != null ? row.roas.toFixed(2) : "–"),
    pacing(row, settings));
  if (flash) tr.classList.add("flash");
  const existing = tbody.querySelector(`tr[data-campaign-id="${CSS.escape(campaignId)}"]`);
  if (existing) { existing.replaceWith(tr); return; }
  const after = [...tbody.children].find((other) => other.dataset.campaignId > campaignId);
  tbody.insertBefore(tr, after || null);
}

function renderAlerts() {
  const list = $("#alerts");
  list.replaceChildren(...state.alerts.map((a) => {
    const name = state.campaigns.get(a.campaignId);
    return el("li", { "data-alert-id": a.alertId, "data-campaign-id": a.campaignId, "data-kind": a.kind,
                      "data-severity": a.severity },
      el("span", { class: "sev sev-" + a.severity }, a.severity),
      el("strong", {}, a.kind.replaceAll("_", " ").toLowerCase()), " · ", name ? name.name : a.campaignId,
      a.creativeId ? " · " + a.creativeId : "",
      el("div", { class: "muted" }, a.message));
  }));
}

function renderAttribution() {
  const box = $("#attribution");
  const models = [...new Set(state.credits.map((c) => c.model))].sort();
  const campaigns = [...new Set(state.credits.map((c) => c.campaignId))].sort();
  if (!models.length) { box.replaceChildren(el("span", { class: "muted" }, "no attribution credits yet")); return; }
  const max = Math.max(...state.credits.map((c) => c.conversions), 1e-9);
  const barH = 8, groupH = models.length * barH + 10, left = 110, width = 420;
  const svg = svgEl("svg", { width: left + width + 60, height: campaigns.length * groupH + 24, role: "img" });
  campaigns.forEach((campaign, i) => {
    const y0 = i * groupH;
    const label = svgEl("text", { x: 0, y: y0 + groupH / 2 });
    label.textContent = (state.campaigns.get(campaign) || { name: campaign }).name.slice(0, 16);
    svg.append(label);
    models.forEach((model, j) => {
      const credit = state.credits.find((c) => c.campaignId === campaign && c.model === model);
      const value = credit ? credit.conversions : 0;
      const rect = svgEl("rect", { x: left, y: y0 + j * barH, height: barH - 1, width: (value / max) * width,
        fill: MODEL_COLOURS[j % MODEL_COLOURS.length], "data-campaign-id": campaign, "data-model": model,
        "data-value": String(value) });
      const title = svgEl("title");
      title.textContent = `${model}: ${value.toFixed(2)} conversions`;
      rect.append(title);
      svg.append(rect);
    });
  });
  const legend = el("div", { class: "muted" }, ...models.map((m, j) =>
    el("span", { style: `color:${MODEL_COLOURS[j % MODEL_COLOURS.length]};margin-right:10px` }, "■ " + m)));
  box.replaceChildren(svg, legend);
}

function renderFatigue() {
  const box = $("#fatigue");
  const fatigued = [...state.fatigue.values()].filter((f) => f.status === "FATIGUED");
  if (!fatigued.length) { box.replaceChildren(el("span", { class: "muted" }, "no fatigued creative")); return; }
  box.replaceChildren(...fatigued.map(chart));
}

function chart(f) {
  const W = 300, H = 160, P = 28;
  const points = f.recentPoints.filter((p) => p.impressions > 0)
    .map((p) => ({ x: p.exposure, y: p.clicks / p.impressions }));
  const xs = points.map((p) => p.x), ys = points.map((p) => p.y);
  if (f.decay) ys.push(f.decay.ctrAtZero * Math.exp(-f.decay.lambda * (xs.length ? Math.min(...xs) : 0)));
  const x0 = xs.length ? Math.min(...xs) : 0, x1 = xs.length ? Math.max(...xs) : 1;
  const y1 = Math.max(...ys, 1e-6) * 1.1;
  const sx = (x) => P + ((x - x0) / Math.max(x1 - x0, 1e-9)) * (W - 2 * P);
  const sy = (y) => H - P - (y / y1) * (H - 2 * P);
  const svg = svgEl("svg", { width: W, height: H, "data-creative-id": f.creativeId, role: "img" });
  svg.append(svgEl("line", { x1: P, y1: H - P, x2: W - P, y2: H - P, stroke: "#c9ced6" }));
  svg.append(svgEl("line", { x1: P, y1: P, x2: P, y2: H - P, stroke: "#c9ced6" }));
  for (const p of points) svg.append(svgEl("circle", { cx: sx(p.x), cy: sy(p.y), r: 3, fill: "#2f6fde" }));
  if (f.decay) {
    const steps = 40, d = [];
    for (let i = 0; i <= steps; i++) {
      const x = x0 + ((x1 - x0) * i) / steps;
      d.push(`${i ? "L" : "M"}${sx(x).toFixed(1)},${sy(f.decay.ctrAtZero * Math.exp(-f.decay.lambda * x)).toFixed(1)}`);
    }
    svg.append(svgEl("path", { d: d.join(" "), fill: "none", stroke: "#d33a2c", "stroke-width": 2 }));
  }
  const axis = svgEl("text", { x: W / 2 - 30, y: H - 6 });
  axis.textContent = "exposure (impressions / user)";
  const yAxis = svgEl("text", { x: 2, y: P - 8 });
  yAxis.textContent = "CTR " + pct(y1);
  svg.append(axis, yAxis);
  const days = f.daysRemaining == null ? "" : ` · ${f.daysRemaining.toFixed(1)} days left`;
  return el("div", { class: "chart", "data-creative-id": f.creativeId },
    el("div", {}, el("strong", {}, f.creativeId), el("span", { class: "muted" }, ` score ${f.score.toFixed(2)}${days}`)),
    svg);
}

// --- graphql-transport-ws ------------------------------------------------------------------------------------------
const SUBSCRIPTIONS = {
  metrics: [`subscription { campaignMetricsUpdated(granularity: DAILY) { ${METRICS_FIELDS} } }`,
            (d) => applyMetrics(d.campaignMetricsUpdated)],
  alerts: [`subscription { alertChanged(minSeverity: LOW) { ${ALERT_FIELDS} } }`,
           (d) => applyAlert(d.alertChanged, true)],
  fatigue: [`subscription { creativeFatigueChanged { ${FATIGUE_FIELDS} } }`,
            (d) => applyFatigue(d.creativeFatigueChanged)],
};

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/graphql/ws`, "graphql-transport-ws");
  ws.onopen = () => ws.send(JSON.stringify({ type: "connection_init",
                                             payload: { authorization: "Bearer " + state.token } }));
  ws.onmessage = async (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "connection_ack") {
      for (const [id, [text]] of Object.entries(SUBSCRIPTIONS)) {
        ws.send(JSON.stringify({ id, type: "subscribe", payload: { query: text } }));
      }
      // Subscribed first, then the snapshot: nothing written in between is missed (rows apply by revision).
      try {
        const data = await query(SNAPSHOT);
        applySlow(data);
        data.latestMetrics.forEach(applyMetrics);
        data.alertHistory.forEach((a) => applyAlert(a, false));
        data.creativeFatigue.forEach((f) => state.fatigue.set(f.creativeId, f));
        renderFatigue();
        setStatus("live", "live");
      } catch (error) {
        setStatus("error: " + error.message, "error");
      }
    } else if (message.type === "next" && SUBSCRIPTIONS[message.id]) {
      if (message.payload.data) SUBSCRIPTIONS[message.id][1](message.payload.data);
      else if (message.payload.errors) setStatus("resubscribing: " + message.payload.errors[0].message, "error");
    } else if (message.type === "error") {
      setStatus(`subscription ${message.id} refused: ${message.payload[0].message}`, "error");
    } else if (message.type === "ping") {
      ws.send(JSON.stringify({ type: "pong" }));
    }
  };
  ws.onclose = (event) => {
    if (event.code === 4403) { askForToken(); return; }
    setStatus("reconnecting…", "connecting");
    setTimeout(connect, 2000);
  };
}

function askForToken() {
  setStatus("token required", "login");
  const form = $("#login");
  form.hidden = false;
  form.onsubmit = (event) => {
    event.preventDefault();
    state.token = $("#token").value;
    sessionStorage.setItem("adstream-token", state.token);
    form.hidden = true;
    connect();
  };
}

function start() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("token")) {
    sessionStorage.setItem("adstream-token", fragment.get("token"));
    history.replaceState(null, "", location.pathname);
  }
  state.token = sessionStorage.getItem("adstream-token");
  if (!state.token) { askForToken(); return; }
  connect();
  setInterval(() => query(SLOW).then(applySlow).catch(() => {}), 5000);
}

start();
