// sitegate dashboard: logs in with a token, then shows the site live over the WebSocket API
// (docs/websocket-api.md). Plain JS, no build step; all DOM text goes through textContent.
"use strict";

const TREND = 60;            // points kept per trend line
const state = {
  ws: null, nextId: 1, pending: new Map(), role: "viewer",
  readings: new Map(),       // "device/point" -> {device, point, value, ts, quality, history: []}
  devices: [], sinks: {}, rollouts: new Map(), rows: new Map(),
};

const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("data-")) e.setAttribute(k, v); else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return e;
};
const fmtTime = (ts) => ts ? new Date(ts * 1000).toLocaleTimeString() : "—";
const fmtValue = (v) => typeof v === "number" && !Number.isInteger(v) ? v.toFixed(2) : String(v);
const canOperate = () => state.role === "operator" || state.role === "admin";

function setStatus(text, cls = "") { const s = $("status"); s.textContent = text; s.className = cls; }

// --- protocol ------------------------------------------------------------------------------------
function call(type, fields = {}) {
  const id = state.nextId++;
  state.ws.send(JSON.stringify({id, type, ...fields}));
  return new Promise((resolve, reject) => state.pending.set(id, {resolve, reject, type}));
}

function subscribe(type, fields, onEvent) {
  const id = state.nextId;
  state.pending.set(-id, onEvent);     // events arrive with the subscribe command's id
  return call(type, fields);
}

function connect(token) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/api/websocket`);
  state.ws = ws;
  setStatus("connecting…");
  ws.onmessage = (msg) => {
    const m = JSON.parse(msg.data);
    if (m.type === "auth_required") ws.send(JSON.stringify({type: "auth", access_token: token}));
    else if (m.type === "auth_invalid") { $("login-error").textContent = m.message; setStatus("login refused", "error"); }
    else if (m.type === "auth_ok") started(m);
    else if (m.type === "event") { const fn = state.pending.get(-m.id); if (fn) fn(m.event); }
    else if (m.type === "result" || m.type === "pong") {
      const p = state.pending.get(m.id);
      if (!p) return;
      state.pending.delete(m.id);
      if (m.type === "pong" || m.success) p.resolve(m.result); else p.reject(m.error);
    }
  };
  ws.onclose = (ev) => {
    setStatus(`disconnected${ev.reason ? ": " + ev.reason : ""}`, "error");
    for (const p of state.pending.values()) if (p.reject) p.reject({code: "closed", message: "connection closed"});
  };
}

async function started(ok) {
  state.role = ok.role;
  sessionStorage.setItem("sitegate-token", $("token").value);
  $("login").hidden = true;
  $("main").hidden = false;
  $("command-section").hidden = !canOperate();
  setStatus(`connected as ${ok.role}`, "online");
  await Promise.all([refreshSite(), refreshEntries(), refreshDevices()]);
  subscribe("subscribe_readings", {devices: ["*"], points: ["*"], max_rate: 4}, onReadings);
  subscribe("subscribe_events", {kinds: ["*"]}, onEvent);
  setInterval(() => { refreshSite(); refreshDevices(); }, 5000);
}

// --- site, entries, devices ---------------------------------------------------------------------
async function refreshSite() {
  const s = await call("get_site");
  $("site-name").textContent = s.site;
  const box = $("summary");
  const items = [["entries", s.entries], ["devices", s.devices], ["readings in", s.readings_in],
                 ["uptime", `${Math.round(s.uptime)} s`], ["role", s.role]];
  if (s.dataplane && s.dataplane.stored) {
    const stored = Object.values(s.dataplane.stored).reduce((n, c) => n + (c.readings || 0), 0);
    items.splice(3, 0, ["readings in the WAL", stored]);
  }
  box.replaceChildren(...items.map(([k, v]) => el("div", {"data-testid": "summary-" + k.replace(/ /g, "-")}, el("b", {}, v), k)));
  state.sinks = Object.assign({}, s.sinks, state.sinks);
  if (s.dataplane && s.dataplane.sinks) for (const [k, v] of Object.entries(s.dataplane.sinks)) Object.assign(state.sinks[k] ||= {}, v);
  renderSinks();
}

async function refreshEntries() {
  const entries = await call("get_entries");
  const body = $("entries").tBodies[0];
  body.replaceChildren(...entries.map((e) => {
    const btn = el("button", {type: "button", "data-testid": "reload-" + e.id}, "reload");
    btn.hidden = !canOperate();
    btn.onclick = () => call("reload_entry", {entry_id: e.id}).then(refreshEntries, showError);
    return el("tr", {"data-entry": e.id}, el("td", {}, e.id), el("td", {}, `${e.domain} ${e.version}`),
              el("td", {class: "state-" + e.state, "data-testid": "entry-state"}, e.state),
              el("td", {class: "muted"}, e.reason), el("td", {}, btn));
  }));
}

async function refreshDevices() {
  state.devices = await call("list_devices");
  const body = $("devices").tBodies[0];
  body.replaceChildren(...state.devices.map((d) => el("tr", {"data-device": d.id},
    el("td", {}, d.name ? `${d.id} (${d.name})` : d.id), el("td", {}, d.entry),
    el("td", {class: d.online ? "online" : "offline", "data-testid": "device-online"}, d.online ? "● online" : "○ offline"),
    el("td", {}, d.fw_version || "—"),
    el("td", {class: d.drift ? "drift" : ""}, d.drift ? `drift: ${d.reported_config || "?"} → ${d.desired_config}` : (d.reported_config || "—")),
    el("td", {}, fmtTime(d.last_seen)),
    el("td", {class: d.alarms.length ? "critical" : "muted"},
       d.alarms.length ? d.alarms.map((a) => `${a.point}: ${a.level}`).join(", ") : "none"))));
  fillCommandForm();
}

// --- live readings with trend lines -------------------------------------------------------------
function onReadings(ev) {
  for (const [device, points] of Object.entries(ev.readings)) for (const [point, [value, ts, quality]] of Object.entries(points)) {
    const key = `${device}/${point}`;
    let r = state.readings.get(key);
    if (!r) { r = {device, point, history: []}; state.readings.set(key, r); }
    Object.assign(r, {value, ts, quality});
    if (typeof value === "number") { r.history.push(value); if (r.history.length > TREND) r.history.shift(); }
    renderReading(key, r);
  }
}

function sparkline(values) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 120 24");
  svg.setAttribute("preserveAspectRatio", "none");
  if (values.length > 1) {
    const lo = Math.min(...values), hi = Math.max(...values), span = hi - lo || 1;
    const pts = values.map((v, i) => `${(i / (values.length - 1) * 120).toFixed(1)},${(22 - (v - lo) / span * 20).toFixed(1)}`);
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", pts.join(" "));
    svg.append(line);
  }
  return svg;
}

function renderReading(key, r) {
  let row = state.rows.get(key);
  if (!row) {
    row = el("tr", {"data-key": key}, el("td", {}, r.device), el("td", {}, r.point),
             el("td", {class: "num", "data-testid": "value"}), el("td", {}), el("td", {}), el("td", {}));
    state.rows.set(key, row);
    const body = $("readings").tBodies[0];
    const after = [...body.rows].find((x) => x.dataset.key > key);
    body.insertBefore(row, after || null);
  }
  const [, , value, trend, quality, time] = row.cells;
  value.textContent = fmtValue(r.value);
  trend.replaceChildren(sparkline(r.history));
  quality.textContent = r.quality === 0 ? "good" : `0x${r.quality.toString(16)}`;
  quality.className = r.quality >= 0x80 ? "error" : r.quality >= 0x40 ? "warning" : "";
  time.textContent = fmtTime(r.ts);
}

// --- events, sinks, rollouts ---------------------------------------------------------------------
function onEvent(ev) {
  const list = $("events");
  list.prepend(el("li", {class: ev.severity}, `${fmtTime(ev.ts)} ${ev.kind} ${ev.source}` +
                 `${ev.device ? " " + ev.device : ""}${ev.point ? "/" + ev.point : ""}: ${ev.message}`));
  while (list.children.length > 50) list.lastChild.remove();
  if (ev.kind === "entry.state") refreshEntries();
  if (ev.kind.startsWith("device.") || ev.kind === "alert") refreshDevices();
  if (ev.kind.startsWith("sink.")) {
    const name = (ev.data && (ev.data.entry || ev.data.sink)) || ev.source;
    Object.assign(state.sinks[name] ||= {}, ev.data, {last_event: ev.kind, ts: ev.ts});
    if (ev.kind === "sink.detached") state.sinks[name].state = "detached";
    renderSinks();
  }
  if (ev.kind.startsWith("rollout.")) {
    const id = (ev.data && (ev.data.rollout || ev.data.id)) || ev.source || "rollout";
    state.rollouts.set(id, Object.assign(state.rollouts.get(id) || {}, ev.data, {kind: ev.kind, message: ev.message}));
    renderRollouts();
  }
}

function renderSinks() {
  const body = $("sinks").tBodies[0];
  body.replaceChildren(...Object.entries(state.sinks).map(([name, s]) => {
    const depth = s.wal_depth ?? s.pending ?? s.backlog ?? s.depth;
    const st = s.state || (s.connected === true ? "online" : s.connected === false ? "offline" : "—");
    return el("tr", {"data-sink": name}, el("td", {}, name),
              el("td", {class: st === "online" || st === "attached" ? "online" : st === "offline" ? "offline" : ""}, st),
              el("td", {class: "num"}, depth ?? "—"), el("td", {class: "muted"}, s.last_event || ""));
  }));
}

function renderRollouts() {
  const box = $("rollouts");
  box.replaceChildren(...[...state.rollouts.entries()].map(([id, r]) => {
    const done = r.done ?? r.completed ?? 0, total = r.total ?? r.devices ?? 0;
    const bar = el("progress", {max: total || 1, value: done});
    return el("div", {"data-rollout": id}, el("b", {}, id), " ", r.state || r.kind, " ", bar,
              ` ${done}/${total || "?"}${r.wave != null ? " wave " + r.wave : ""} ${r.message || ""}`);
  }));
}

// --- commands (operators) ---------------------------------------------------------------------
function fillCommandForm() {
  const devSel = $("cmd-device");
  const current = devSel.value;
  devSel.replaceChildren(...state.devices.map((d) => el("option", {value: d.id}, d.id)));
  if (current) devSel.value = current;
  fillPoints();
}

async function fillPoints() {
  const device = $("cmd-device").value;
  if (!device) return;
  const d = await call("get_device", {device_id: device});
  const sel = $("cmd-point");
  const current = sel.value;
  const writable = Object.entries(d.points).filter(([, p]) => p.writable).map(([name]) => name);
  state.pointTypes = Object.fromEntries(Object.entries(d.points).map(([name, p]) => [name, p.datatype]));
  sel.replaceChildren(...writable.map((p) => el("option", {value: p}, p)));
  if (writable.includes(current)) sel.value = current;
}

function showError(err) { $("cmd-result").textContent = `${err.code}: ${err.message}`; $("cmd-result").className = "error"; }

async function sendCommand(e) {
  e.preventDefault();
  const raw = $("cmd-value").value.trim();
  const value = raw !== "" && !isNaN(Number(raw)) ? Number(raw) : raw;
  const point = $("cmd-point").value;
  const datatype = (state.pointTypes || {})[point];
  // Say what is wrong here rather than send a value the point cannot hold.
  if (raw === "") return showError({code: "value", message: `type the value to write to ${point}`});
  if ((datatype === "float" || datatype === "int") && typeof value !== "number")
    return showError({code: "value", message: `${point} holds a number (${datatype}), got "${raw}"`});
  if (datatype === "int" && !Number.isInteger(value))
    return showError({code: "value", message: `${point} holds a whole number (int), got ${raw}`});
  const out = $("cmd-result");
  out.textContent = "sending…";
  out.className = "muted";
  try {
    const r = await call("device_command", {device_id: $("cmd-device").value, action: "write",
                                             point: $("cmd-point").value, value});
    out.textContent = `${r.status}: ${$("cmd-device").value}/${$("cmd-point").value} = ${fmtValue(r.value)}`;
    out.className = "online";
  } catch (err) { showError(err); }
}

// --- start ----------------------------------------------------------------------------------------
window.addEventListener("DOMContentLoaded", () => {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) history.replaceState(null, "", location.pathname);    // keep tokens out of the address bar
  $("token").value = fromHash || sessionStorage.getItem("sitegate-token") || "";
  $("login-form").onsubmit = (e) => { e.preventDefault(); $("login-error").textContent = ""; connect($("token").value.trim()); };
  $("cmd-device").onchange = fillPoints;
  $("command-form").onsubmit = sendCommand;
  if ($("token").value) connect($("token").value.trim());
});
