// claudemesh dashboard: the Activity view, drawn as inline SVG (no chart library).
// - Status timeline: each session's status over the last 6 hours, from the broker's status
//   history (`status_history`, kept in the broker's memory); re-read when the view opens and
//   when the peers change.
// - Messages per minute per peer over the last hour, counted from the conversations this
//   dashboard decrypted since it started (what this member can read, nothing more); redrawn
//   live as messages arrive.
"use strict";

VIEWS.push("activity");
LOADERS.activity = () => loadActivity();

const SVG = "http://www.w3.org/2000/svg";
const STATUS_COLORS = { idle: "#4c9a5b", working: "#d08a1e", dnd: "#b8433a", offline: "transparent" };
const HOURS = 6;
const CHART_MINUTES = 60;

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

async function loadActivity() {
  const data = await api("/api/status-history");
  drawTimeline(data.changes, Date.parse(data.now) || Date.now());
  drawChart();
}

// One row per session (by display name), a bar per stretch of one status.
function drawTimeline(changes, now) {
  const from = now - HOURS * 3600 * 1000;
  const rows = new Map(); // name -> [{at, status, source}]
  for (const c of changes) {
    if (!rows.has(c.name)) rows.set(c.name, []);
    rows.get(c.name).push(c);
  }
  const left = 110, width = 640, rowH = 22, top = 20;
  const x = (ms) => left + ((Math.max(ms, from) - from) / (now - from)) * width;
  const height = top + rows.size * rowH + 10;
  const chart = svg("svg", { viewBox: "0 0 " + (left + width + 10) + " " + height, role: "img", "aria-label": "status of each session over the last " + HOURS + " hours", class: "timeline" });
  for (let h = 0; h <= HOURS; h++) {
    const at = from + h * 3600 * 1000;
    chart.append(svg("line", { x1: x(at), x2: x(at), y1: top - 4, y2: height - 6, class: "grid" }),
      svg("text", { x: x(at), y: 12, "text-anchor": "middle", class: "axis" }, clock(at)));
  }
  let i = 0;
  for (const [name, list] of rows) {
    const y = top + i * rowH;
    const row = svg("g", { class: "timeline-row", "data-name": name });
    row.append(svg("text", { x: left - 6, y: y + 15, "text-anchor": "end", class: "label" }, name));
    list.forEach((c, k) => {
      const end = k + 1 < list.length ? list[k + 1].atMs : now;
      if (c.status === "offline" || end < from) return;
      const bar = svg("rect", { x: x(c.atMs), y: y + 3, width: Math.max(1, x(end) - x(c.atMs)), height: rowH - 6, fill: STATUS_COLORS[c.status] || "#888", "data-status": c.status },
        svg("title", {}, name + ": " + c.status + " (" + c.source + ") " + clock(c.atMs) + "–" + clock(end)));
      row.append(bar);
    });
    chart.append(row);
    i++;
  }
  $("timeline").replaceChildren(chart);
  $("timeline-empty").hidden = rows.size > 0;
}

// Messages per minute per peer, from the messages this page holds (sent and received).
function drawChart() {
  const now = Date.now();
  const from = now - CHART_MINUTES * 60000;
  const counts = new Map(); // peer -> array of per-minute counts
  for (const m of messages) {
    const at = Date.parse(m.createdAt);
    if (!(at >= from)) continue;
    const peer = m.direction === "sent" ? (me ? me.displayName : "you") : m.from;
    if (!counts.has(peer)) counts.set(peer, new Array(CHART_MINUTES).fill(0));
    counts.get(peer)[Math.min(CHART_MINUTES - 1, Math.floor((at - from) / 60000))] += 1;
  }
  const left = 40, width = 640, height = 160, top = 10;
  const max = Math.max(1, ...[...counts.values()].flat());
  const x = (i) => left + (i / (CHART_MINUTES - 1)) * width;
  const y = (n) => top + height - (n / max) * height;
  const chart = svg("svg", { viewBox: "0 0 " + (left + width + 130) + " " + (top + height + 30), role: "img", "aria-label": "messages per minute per peer over the last hour", class: "rate-chart" });
  chart.append(svg("line", { x1: left, x2: left + width, y1: y(0), y2: y(0), class: "grid" }),
    svg("text", { x: left - 6, y: y(max) + 4, "text-anchor": "end", class: "axis" }, max),
    svg("text", { x: left - 6, y: y(0) + 4, "text-anchor": "end", class: "axis" }, 0),
    svg("text", { x: left, y: top + height + 20, class: "axis" }, clock(from)),
    svg("text", { x: left + width, y: top + height + 20, "text-anchor": "end", class: "axis" }, clock(now)));
  let k = 0;
  for (const [peer, per] of counts) {
    const hue = (k * 137) % 360;
    const points = per.map((n, i) => x(i) + "," + y(n)).join(" ");
    chart.append(svg("g", { class: "rate-line", "data-name": peer, "data-total": per.reduce((a, b) => a + b, 0) },
      svg("polyline", { points, fill: "none", stroke: "hsl(" + hue + " 60% 50%)", "stroke-width": 2 }),
      svg("text", { x: left + width + 8, y: top + 12 + k * 16, fill: "hsl(" + hue + " 60% 50%)" }, peer + " (" + per.reduce((a, b) => a + b, 0) + ")")));
    k++;
  }
  $("rate-chart").replaceChildren(chart);
  $("rate-empty").hidden = counts.size > 0;
}
