// claudemesh dashboard: plain JavaScript, no framework. Lists come from /api/..., and the
// page re-reads one when /events (server-sent events) says it changed: no polling.
// Text from the mesh is only ever put in the page as text (textContent), never as HTML.
"use strict";

const VIEWS = ["peers", "conversations", "board", "tasks", "memory", "files", "approvals", "more"];
const names = new Map(); // pubkey -> display name
let me = null;
let messages = [];
let thread = null; // the selected thread, or null for all
let unread = 0;

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") node.className = v;
    else if (k === "onclick") node.addEventListener("click", v);
    else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function showError(text) {
  const e = $("error");
  e.textContent = text || "";
  e.hidden = !text;
}

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  };
  const resp = await fetch(path, init);
  const text = await resp.text();
  let data = null;
  try { data = JSON.parse(text); } catch (_) { data = { error: text.trim() }; }
  if (!resp.ok) throw new Error((data && data.error) || resp.statusText);
  return data;
}

function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  const secs = Math.round((Date.now() - d.getTime()) / 1000);
  if (secs < 60) return "just now";
  if (secs < 3600) return Math.round(secs / 60) + " min ago";
  if (secs < 86400) return Math.round(secs / 3600) + " h ago";
  return d.toLocaleString();
}

function nameOf(spec) {
  if (!spec) return "";
  if (spec === "*") return "everyone (*)";
  if (spec.startsWith("@")) return spec;
  return names.get(spec) || spec.slice(0, 8) + "…";
}

function groupsText(groups) {
  return (groups || []).map((g) => "@" + g.name + (g.role ? ":" + g.role : "")).join(" ");
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

// ---- views ---------------------------------------------------------------------------------

function showView() {
  let view = location.hash.replace("#", "");
  if (!VIEWS.includes(view)) view = "peers";
  for (const v of VIEWS) {
    $("view-" + v).hidden = v !== view;
    const tab = $("tab-" + v);
    if (v === view) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  if (view === "conversations") { unread = 0; $("unread").textContent = ""; }
  return view;
}

// Showing a view re-reads its list (events keep it fresh from then on).
const LOADERS = {
  peers: () => Promise.all([loadPeers(), loadInvites()]), conversations: () => loadMessages(), board: () => loadBoard(),
  tasks: () => loadTasks(), files: () => loadFiles(), approvals: () => loadApprovals(),
  more: () => loadMore(),
};

function viewChanged() {
  const load = LOADERS[showView()];
  if (load) load().catch((e) => showError(e.message));
}

// ---- peers ---------------------------------------------------------------------------------

async function loadPeers() {
  const data = await api("/api/peers");
  for (const m of data.members) names.set(m.pubkey, m.displayName);
  for (const p of data.peers) { names.set(p.pubkey, p.displayName); names.set(p.memberPubkey, p.displayName); }
  // Tools' connections (this dashboard, CLI calls) are not sessions.
  const sessions = data.peers.filter((p) => p.peerRole !== "observer" && p.peerRole !== "control-plane");
  fill($("peers-table").tBodies[0], sessions.map((p) => el("tr", { class: "peer", "data-name": p.displayName },
    el("td", {}, p.displayName),
    el("td", { class: "status-" + p.status, title: p.statusSince ? "since " + p.statusSince : "" },
      p.status, p.statusSource ? el("span", { class: "source" }, " (" + p.statusSource + ")") : ""),
    el("td", {}, p.summary || ""),
    el("td", {}, groupsText(p.groups)),
    el("td", {}, [p.peerType, p.channel, p.model].filter(Boolean).join(" · ")),
    el("td", {}, when(p.connectedAt)))));
  $("peers-empty").hidden = sessions.length > 0;
  const admin = isAdmin(data.members);
  document.body.dataset.admin = String(admin);
  fill($("members-table").tBodies[0], data.members.map((m) => el("tr", { class: "member", "data-name": m.displayName },
    el("td", {}, m.displayName),
    el("td", {}, m.role),
    el("td", {}, m.online ? "online" : "offline"),
    el("td", {}, m.online ? "now" : when(m.lastSeenAt)),
    el("td", {}, groupsText(m.groups)),
    memberActions(m, admin))));
  const targets = new Set(["*"]);
  for (const m of data.members) { targets.add(m.displayName); for (const g of m.groups || []) targets.add("@" + g.name); }
  for (const p of data.peers) for (const g of p.groups || []) targets.add("@" + g.name);
  $("targets").replaceChildren(...[...targets].map((t) => el("option", { value: t })));
  renderMessages();
}

async function loadInvites() {
  try {
    const data = await api("/api/invites");
    fill($("invites-table").tBodies[0], data.invites.map((i) => el("tr", { class: "invite" },
      el("td", {}, i.code), el("td", {}, i.role), el("td", {}, i.usesLeft + "/" + i.maxUses),
      el("td", {}, new Date(i.expiresAt * 1000).toLocaleString()), el("td", {}, i.createdByName || i.createdBy),
      el("td", {}, i.status))));
    $("invites-table").hidden = false;
    $("invites-note").hidden = true;
  } catch (e) {
    $("invites-table").hidden = true;
    $("invites-note").hidden = false;
    $("invites-note").textContent = "Invites are for the owner and admins (" + e.message + ").";
  }
}

async function createInvite(event) {
  event.preventDefault();
  $("invite-result").textContent = "creating…";
  try {
    const inv = await api("/api/invites", {
      role: $("invite-role").value,
      uses: Number($("invite-uses").value),
      expires: $("invite-expires").value,
    });
    $("invite-link").value = inv.url;
    $("invite-qr").src = "data:image/svg+xml;base64," + btoa(inv.qrSvg);
    $("invite-made").hidden = false;
    $("invite-result").textContent = "code " + inv.code + ", " + inv.uses + " use(s), expires " + new Date(inv.expiresAt).toLocaleString();
    await loadInvites();
  } catch (e) {
    $("invite-result").textContent = e.message;
  }
}

// ---- conversations -------------------------------------------------------------------------

async function loadMessages() {
  messages = (await api("/api/messages")).messages;
  renderMessages();
}

function threadLabel(t) {
  if (t === "reminder" || t === "webhook" || t === "watch") return t + "s";
  return nameOf(t);
}

function renderMessages() {
  const threads = [...new Set(messages.map((m) => m.thread))];
  const all = el("button", { type: "button", "aria-pressed": String(thread === null), onclick: () => pick(null) }, "All messages");
  $("threads").replaceChildren(el("li", {}, all), ...threads.map((t) => el("li", {},
    el("button", { type: "button", "aria-pressed": String(thread === t), "data-thread": t, onclick: () => pick(t) }, threadLabel(t)))));
  const shown = messages.filter((m) => thread === null || m.thread === thread);
  $("thread-title").textContent = thread === null ? "All messages" : threadLabel(thread);
  $("messages").replaceChildren(...shown.map(renderMessage));
  $("messages-empty").hidden = shown.length > 0;
}

function renderMessage(m) {
  const to = m.direction === "sent" || !isDirect(m.to) ? " → " + nameOf(m.to) : "";
  const status = el("span", { class: "delivery" });
  const li = el("li", { class: "msg " + m.direction, "data-id": m.id },
    el("div", { class: "meta" },
      el("strong", {}, m.from), to, " · ",
      el("span", { class: "prio-" + m.priority }, m.priority), " · ", when(m.createdAt), " ", status),
    m.text !== undefined ? el("div", { class: "text" }, m.text) : el("div", { class: "problem" }, "unreadable: " + m.problem));
  if (m.direction === "sent" && m.id) {
    status.append(el("button", { type: "button", class: "secondary", onclick: () => delivery(m.id, status) }, "delivery?"));
  }
  return li;
}

function isDirect(spec) { return /^[0-9a-f]{64}$/.test(spec || ""); }

async function delivery(id, where) {
  try {
    const s = await api("/api/message-status?id=" + encodeURIComponent(id));
    const each = (s.recipients || []).map((r) => r.name + ": " + (r.acknowledged ? "read" : r.status)).join(", ");
    where.replaceChildren((s.acknowledged ? "acknowledged" : s.delivered ? "delivered" : "waiting") + (each ? " (" + each + ")" : ""));
  } catch (e) {
    where.replaceChildren(String(e.message).includes("not_found") ? "acknowledged (body dropped)" : e.message);
  }
}

function pick(t) {
  thread = t;
  if (t && !["reminder", "webhook", "watch"].includes(t)) {
    $("compose-to").value = t.startsWith("@") || t === "*" ? t : (names.get(t) || t);
  }
  renderMessages();
}

function addMessage(m) {
  if (messages.some((k) => k.id && k.id === m.id)) return;
  messages.push(m);
  renderMessages();
  if ($("view-conversations").hidden && m.direction === "received") {
    unread += 1;
    $("unread").textContent = String(unread);
  }
}

async function send(event) {
  event.preventDefault();
  const result = $("compose-result");
  result.textContent = "sending…";
  try {
    const r = await api("/api/send", {
      to: $("compose-to").value,
      text: $("compose-text").value,
      priority: $("compose-priority").value,
    });
    const bad = r.sent.filter((s) => !s.queued);
    result.textContent = bad.length ? bad.map((s) => s.to + ": " + s.error).join("; ") : "sent";
    if (!bad.length) $("compose-text").value = "";
  } catch (e) {
    result.textContent = e.message;
  }
}

// ---- board ---------------------------------------------------------------------------------

async function loadBoard() {
  const entries = (await api("/api/state")).entries;
  fill($("board-table").tBodies[0], entries.map((s) => {
    const value = typeof s.value === "string" ? s.value : JSON.stringify(s.value);
    return el("tr", { class: "state", "data-key": s.key },
      el("td", {}, s.key),
      el("td", { class: "value" }, value),
      el("td", {}, nameOf(s.updatedBy) || s.updatedBy),
      el("td", {}, when(s.updatedAt)),
      el("td", {}, el("button", { type: "button", class: "secondary", onclick: () => {
        $("board-key").value = s.key; $("board-value").value = value; $("board-value").focus();
      } }, "Edit")));
  }));
  $("board-empty").hidden = entries.length > 0;
}

async function saveBoard(event) {
  event.preventDefault();
  try {
    await api("/api/state", { key: $("board-key").value, value: $("board-value").value });
    $("board-result").textContent = "saved";
  } catch (e) {
    $("board-result").textContent = e.message;
  }
}

// ---- tasks ---------------------------------------------------------------------------------

async function loadTasks() {
  const tasks = (await api("/api/tasks")).tasks;
  const card = (t) => {
    const actions = el("div", { class: "actions" });
    if (t.status === "open") actions.append(el("button", { type: "button", class: "claim", onclick: () => taskAction("claim", t.id) }, "Claim"));
    if (t.status === "claimed") actions.append(el("button", { type: "button", class: "complete", onclick: () => taskAction("complete", t.id) }, "Complete"));
    return el("li", { class: "task", "data-id": t.id, "data-title": t.title },
      el("div", {}, t.title),
      el("div", { class: "meta" }, [
        t.priority, t.assignee ? "for " + t.assignee : "", t.claimedBy ? "claimed by " + t.claimedBy : "",
        "by " + t.createdBy, when(t.createdAt),
      ].filter(Boolean).join(" · ")),
      t.result ? el("pre", {}, t.result) : null,
      actions);
  };
  for (const status of ["open", "claimed", "done"]) {
    $("tasks-" + status).replaceChildren(...tasks.filter((t) => t.status === status).map(card));
  }
}

async function taskAction(what, id) {
  try { await api("/api/tasks/" + what, { id }); showError(""); } catch (e) { showError(e.message); }
}

// ---- memory and files ----------------------------------------------------------------------

async function recall(event) {
  if (event) event.preventDefault();
  const q = $("memory-q").value;
  if (!q.trim()) return;
  try {
    const found = (await api("/api/memory?q=" + encodeURIComponent(q))).memories;
    $("memories").replaceChildren(...found.map((m) => el("li", { class: "memory" },
      el("pre", {}, m.content),
      el("div", { class: "meta" }, [m.tags.map((t) => "#" + t).join(" "), "by " + m.rememberedBy, when(m.rememberedAt)].filter(Boolean).join(" · ")),
      el("div", { class: "actions" }, el("button", { type: "button", class: "secondary", onclick: () => forget(m.id) }, "Forget")))));
    if (!found.length) $("memories").replaceChildren(el("li", { class: "empty" }, "Nothing found."));
  } catch (e) { showError(e.message); }
}

async function forget(id) {
  try { await api("/api/memory/forget", { id }); await recall(); } catch (e) { showError(e.message); }
}

function size(n) {
  if (n < 1024) return n + " B";
  if (n < 1 << 20) return (n / 1024).toFixed(1) + " KiB";
  return (n / (1 << 20)).toFixed(1) + " MiB";
}

async function loadFiles() {
  const files = (await api("/api/files")).files;
  fill($("files-table").tBodies[0], files.map((f) => el("tr", { class: "file" },
    el("td", {}, el("a", { href: "/api/files/download?id=" + encodeURIComponent(f.id), download: f.name }, f.name)),
    el("td", {}, size(f.size)),
    el("td", {}, f.uploadedBy),
    el("td", {}, when(f.uploadedAt)),
    el("td", {}, (f.tags || []).join(", ")))));
  $("files-empty").hidden = files.length > 0;
}

// The page sends the bytes to the dashboard (progress from XMLHttpRequest), which shares them
// as `claudemesh file share` does; `upload` events then report the broker side.
function upload(event) {
  event.preventDefault();
  const file = $("upload-file").files[0];
  if (!file) return;
  const q = new URLSearchParams({ name: file.name, to: $("upload-to").value, tags: $("upload-tags").value });
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/api/files/upload?" + q);
  xhr.setRequestHeader("Content-Type", "application/octet-stream");
  const bar = $("upload-progress");
  bar.hidden = false;
  bar.value = 0;
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) { bar.value = e.loaded / e.total; $("upload-result").textContent = "sending " + size(e.loaded) + " of " + size(e.total) + "…"; }
  };
  xhr.onload = () => {
    let data = {};
    try { data = JSON.parse(xhr.responseText); } catch (_) { data = { error: xhr.responseText }; }
    if (xhr.status === 200) {
      bar.value = 1;
      $("upload-result").textContent = "shared " + data.name + " (" + size(data.size) + ")" + (data.encrypted ? ", encrypted" : "") + " as " + data.fileId;
      $("upload-form").reset();
      loadFiles().catch((e) => showError(e.message));
    } else {
      $("upload-result").textContent = data.error || xhr.statusText;
    }
  };
  xhr.onerror = () => { $("upload-result").textContent = "the upload failed: is the dashboard still running?"; };
  $("upload-result").textContent = "sending…";
  xhr.send(file);
}

function uploadProgress(p) {
  $("upload-result").textContent = "uploading " + p.name + " to the broker: " + Math.round(100 * p.done / Math.max(p.total, 1)) + "%";
}

// ---- approvals -----------------------------------------------------------------------------

async function loadApprovals() {
  const list = (await api("/api/approvals")).approvals.filter((a) => a.status === "pending");
  $("approvals").replaceChildren(...list.map((a) => el("li", { class: "approval", "data-request-id": a.requestId, "data-id": a.id },
    el("div", {}, el("strong", {}, a.requester), " asks to use ", el("strong", {}, a.toolName || "?")),
    a.description ? el("div", {}, a.description) : null,
    a.inputPreview ? el("pre", {}, a.inputPreview) : null,
    a.problem ? el("div", { class: "problem" }, "unreadable: " + a.problem) : null,
    el("div", { class: "meta" }, "expires " + new Date(a.expiresAt).toLocaleTimeString()),
    el("div", { class: "actions" },
      el("button", { type: "button", class: "allow", onclick: () => answer(a.id, true) }, "Allow"),
      el("button", { type: "button", class: "deny secondary", onclick: () => answer(a.id, false) }, "Deny")))));
  $("approvals-empty").hidden = list.length > 0;
  $("pending").textContent = list.length ? String(list.length) : "";
}

async function answer(id, allow) {
  try { await api("/api/approvals/answer", { id, allow }); showError(""); } catch (e) { showError(e.message); }
  await loadApprovals().catch((e) => showError(e.message));
}

// ---- reminders, streams, contexts ---------------------------------------------------------

function cards(list, empty, card) {
  return list.length ? list.map(card) : [el("li", { class: "empty" }, empty)];
}

async function loadMore() {
  const more = await api("/api/more");
  $("reminders").replaceChildren(...cards(more.reminders, "None.", (r) => el("li", { class: "reminder" },
    el("pre", {}, r.message),
    el("div", { class: "meta" }, ["to " + nameOf(r.to), r.cron ? "cron " + r.cron : "at " + new Date(r.deliverAt).toLocaleString(),
      r.firedCount ? "fired " + r.firedCount + "×" : ""].filter(Boolean).join(" · ")))));
  $("streams").replaceChildren(...cards(more.streams, "None.", (s) => el("li", { class: "stream" },
    el("strong", {}, s.name),
    el("div", { class: "meta" }, s.subscriberCount + " subscribed · by " + s.createdBy + " · " + when(s.createdAt)))));
  $("contexts").replaceChildren(...cards(more.contexts, "None.", (c) => el("li", { class: "context" },
    el("strong", {}, c.peerName), " ", c.summary,
    (c.keyFindings || []).length ? el("ul", {}, ...c.keyFindings.map((k) => el("li", {}, k))) : null,
    el("div", { class: "meta" }, [(c.tags || []).map((t) => "#" + t).join(" "), (c.filesRead || []).length + " files read", when(c.updatedAt)].filter(Boolean).join(" · ")))));
}

// ---- live ----------------------------------------------------------------------------------

function loadAll() {
  const jobs = [loadPeers(), loadInvites(), loadMessages(), loadBoard(), loadTasks(), loadFiles(), loadApprovals()];
  const open = LOADERS[showView()];
  if (open) jobs.push(open());
  return Promise.all(jobs.map((j) => j.catch((e) => showError(e.message))));
}

function listen() {
  const events = new EventSource("/events");
  const reload = (load) => () => load().catch((e) => showError(e.message));
  const activity = () => { if (!$("view-activity").hidden) loadActivity().catch((e) => showError(e.message)); };
  events.addEventListener("message", (e) => { addMessage(JSON.parse(e.data)); if (!$("view-activity").hidden) drawChart(); });
  // Someone came, left or changed their profile; or a session's status changed.
  events.addEventListener("peers", () => { loadPeers().catch((e) => showError(e.message)); activity(); });
  events.addEventListener("status", () => { loadPeers().catch((e) => showError(e.message)); activity(); });
  events.addEventListener("state", reload(loadBoard));
  // A list changed on the broker: re-read it if it is loaded or showing.
  events.addEventListener("changed", (e) => {
    const area = JSON.parse(e.data).area;
    const view = VIEWS.find((v) => !$("view-" + v).hidden);
    if (area === "tasks") reload(loadTasks)();
    else if (area === "files") reload(loadFiles)();
    else if (area === "members") reload(LOADERS.peers)();
    else if (area === "memory" && view === "memory") recall();
    if (view === "more" && ["contexts", "streams", "reminders"].includes(area)) reload(LOADERS.more)();
    if (view === "skills" && ["skills", "tools"].includes(area)) reload(LOADERS.skills)();
    if (view === "watches" && area === "watches") reload(LOADERS.watches)();
    if (view === "audit") reload(LOADERS.audit)();
  });
  events.addEventListener("files", reload(loadFiles));
  events.addEventListener("upload", (e) => uploadProgress(JSON.parse(e.data)));
  events.addEventListener("tasks", reload(loadTasks));
  events.addEventListener("approvals", reload(loadApprovals));
  events.addEventListener("resync", () => loadAll());
  events.addEventListener("link", (e) => { $("link").textContent = "broker: " + JSON.parse(e.data).link; });
  events.onopen = () => { $("link").textContent = "live"; };
  events.onerror = () => { $("link").textContent = "dashboard unreachable, retrying…"; };
}

async function start() {
  window.addEventListener("hashchange", viewChanged);
  showView();
  $("composer").addEventListener("submit", send);
  $("board-form").addEventListener("submit", saveBoard);
  $("memory-form").addEventListener("submit", recall);
  $("invite-form").addEventListener("submit", createInvite);
  $("upload-form").addEventListener("submit", upload);
  $("audit-form").addEventListener("submit", loadAudit);
  try {
    me = await api("/api/me");
    $("who").textContent = me.displayName + " in " + me.mesh;
  } catch (e) { showError(e.message); }
  listen();
  await loadAll();
  document.body.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", start);
