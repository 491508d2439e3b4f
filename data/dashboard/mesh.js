// claudemesh dashboard: skills, shared tools, watches and webhooks, the audit log, and the
// owner's and admins' member actions (role, kick, ban, revoke). Each list is read when its
// view opens, and again when the broker says it changed (`changed` events); nothing polls.
"use strict";

VIEWS.push("skills", "watches", "audit");
LOADERS.skills = () => loadSkills();
LOADERS.watches = () => loadWatches();
LOADERS.audit = () => loadAudit();

// ---- skills and shared tools ---------------------------------------------------------------

async function loadSkills() {
  const [skills, tools] = await Promise.all([api("/api/skills"), api("/api/tools")]);
  $("skills").replaceChildren(...cards(skills.skills, "No skill is shared.", (s) => el("li", { class: "skill", "data-name": s.name },
    el("strong", {}, s.name), " v" + s.version, el("div", {}, s.description),
    el("div", { class: "meta" }, [(s.tags || []).map((t) => "#" + t).join(" "), "by " + s.author, when(s.createdAt)].filter(Boolean).join(" · ")))));
  $("mcp-servers").replaceChildren(...cards(tools.servers, "No member shares an MCP server.", (m) => el("li", { class: "mcp-server", "data-name": m.name },
    el("strong", {}, m.name), " ", el("span", { class: m.online ? "" : "problem" }, m.online ? "online" : "offline"),
    el("div", {}, m.description),
    el("div", { class: "meta" }, ["hosted by " + m.hostedBy, m.tools.map((t) => t.name).join(", ")].filter(Boolean).join(" · ")))));
  $("mcp-services").replaceChildren(...cards(tools.services, "No service is deployed.", (d) => el("li", { class: "mcp-service", "data-name": d.name },
    el("strong", {}, d.name), " ", d.status, d.error ? el("div", { class: "problem" }, d.error) : null,
    el("div", {}, d.description),
    el("div", { class: "meta" }, [d.type, d.toolCount + " tools", d.runtime, "by " + d.deployedBy, when(d.createdAt)].filter(Boolean).join(" · ")))));
}

// ---- watches and webhooks ------------------------------------------------------------------

async function loadWatches() {
  const data = await api("/api/watches");
  $("watches").replaceChildren(...cards(data.watches, "No watch.", (w) => el("li", { class: "watch", "data-id": w.id },
    el("strong", {}, w.label || w.url), w.label ? el("div", {}, w.url) : null,
    el("div", { class: "meta" }, [w.mode, "every " + w.interval + " s", "notify " + w.notifyOn, "to " + nameOf(w.target),
      w.lastCheck ? "checked " + when(w.lastCheck) : "", "by " + w.createdBy].filter(Boolean).join(" · ")),
    w.lastValue ? el("pre", {}, w.lastValue) : null,
    w.lastError ? el("div", { class: "problem" }, w.lastError) : null)));
  $("webhooks").replaceChildren(...cards(data.webhooks, "No webhook.", (h) => el("li", { class: "webhook", "data-name": h.name },
    el("strong", {}, h.name), " ", h.active ? "active" : "inactive",
    el("div", {}, h.url),
    el("div", { class: "meta" }, ["to " + nameOf(h.target), "by " + h.createdBy, when(h.createdAt)].join(" · ")))));
}

// ---- audit log -----------------------------------------------------------------------------

async function loadAudit(event) {
  if (event) event.preventDefault();
  try {
    const data = await api("/api/audit?type=" + encodeURIComponent($("audit-type").value.trim()));
    fill($("audit-table").tBodies[0], data.entries.map((a) => el("tr", { class: "audit", "data-type": a.eventType },
      el("td", {}, new Date(a.createdAt).toLocaleString()),
      el("td", {}, a.eventType),
      el("td", {}, nameOf(a.actor) || a.actor),
      el("td", {}, Object.entries(a.payload || {}).map(([k, v]) => k + "=" + v).join(" ")))));
    $("audit-note").textContent = data.entries.length + " of " + data.total + " entries, newest first.";
    $("audit-table").hidden = false;
  } catch (e) {
    $("audit-table").hidden = true;
    $("audit-note").textContent = "The audit log is for the owner and admins (" + e.message + ").";
  }
}

// ---- members: role, kick, ban, revoke (owner and admins) -----------------------------------

function isAdmin(members) {
  const mine = me && members.find((m) => m.pubkey === me.memberPubkey);
  return !!mine && (mine.role === "owner" || mine.role === "admin");
}

// The actions cell of a member's row; empty for non-admins, and never against oneself or the owner.
function memberActions(m, admin) {
  const cell = el("td", { class: "actions" });
  if (!admin || m.role === "owner" || (me && m.pubkey === me.memberPubkey)) return cell;
  const other = m.role === "admin" ? "member" : "admin";
  cell.append(
    el("button", { type: "button", class: "secondary role", onclick: () => memberAction("role", m, { role: other }) }, "Make " + other),
    el("button", { type: "button", class: "secondary kick", onclick: () => memberAction("kick", m) }, "Kick"),
    el("button", { type: "button", class: "secondary ban", onclick: () => memberAction("ban", m) }, "Ban"),
    el("button", { type: "button", class: "secondary revoke", onclick: () => memberAction("revoke", m) }, "Revoke"));
  return cell;
}

const CONFIRM = {
  kick: "Close all of NAME's connections? They may come back.",
  ban: "Ban NAME? Their hellos are refused and the mesh root key is rotated.",
  revoke: "Remove NAME from the mesh for good? The mesh root key is rotated.",
};

async function memberAction(what, m, extra) {
  if (CONFIRM[what] && !confirm(CONFIRM[what].replace("NAME", m.displayName))) return;
  const note = $("members-result");
  note.textContent = what + " " + m.displayName + "…";
  try {
    const r = await api("/api/members/" + what, Object.assign({ member: m.memberId }, extra || {}));
    note.textContent = what === "role" ? r.member + " is now " + r.role : what + ": done for " + m.displayName +
      (r.rotated ? " (root key rotated to epoch " + r.rotated.epoch + ")" : "");
  } catch (e) {
    note.textContent = e.message;
  }
  await loadPeers().catch((e) => showError(e.message));
}
