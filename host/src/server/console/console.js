// The Attaché console: signs in with an API token (kept in sessionStorage,
// sent as `Authorization: Bearer`), and renders each view from the API's
// JSON. Data only ever reaches the page as text (no innerHTML).
"use strict";

const KEY = "attache.token";
const state = { restore: { snapshot: "", items: [] } };

// ---- helpers ---------------------------------------------------------

// h("tag", {attr: value, onclick: fn}, child, ...): an element; strings
// become text nodes, null and false are skipped, arrays are flattened.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

function bytes(n) {
  if (n === null || n === undefined) return "";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}

function when(secs) {
  if (!secs) return "";
  return new Date(secs * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

// Jobs newest first: by creation time, then (the same second) by the
// order the server took them in, which is the order it lists them in.
function newestFirst(list) {
  return list.slice().reverse().sort((a, b) => b.created - a.created);
}

function statusCell(s) {
  return h("span", { class: "status-" + s }, s);
}

// An API error, as the server put it.
class ApiError extends Error {
  constructor(status, message) {
    super(status + ": " + message);
    this.status = status;
  }
}

async function api(path, opts = {}) {
  const token = opts.token || sessionStorage.getItem(KEY);
  const headers = { Authorization: "Bearer " + token };
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, {
    method: opts.method || "GET",
    headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  const text = await r.text();
  let body;
  try { body = JSON.parse(text); } catch (_) { body = text; }
  if (!r.ok) {
    const msg = body && body.error !== undefined ? body.error : text || r.statusText;
    throw new ApiError(r.status, msg);
  }
  return body;
}

function showError(e) {
  document.getElementById("error").textContent = e instanceof Error ? e.message : String(e);
}

function clearError() {
  document.getElementById("error").textContent = "";
}

// The nodes of a nested list, without the empty places (null, false).
function present(list) {
  return list.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false);
}

function view(...children) {
  const v = document.getElementById("view");
  v.replaceChildren(...present(children));
  return v;
}

// ---- sign-in ---------------------------------------------------------

function showSignIn() {
  document.getElementById("nav").hidden = true;
  document.getElementById("sign-in").hidden = false;
  view();
  document.getElementById("token").focus();
}

async function signIn(ev) {
  ev.preventDefault();
  clearError();
  const token = document.getElementById("token").value.trim();
  try {
    // Any read proves the token.
    await api("/snapshots", { token });
  } catch (e) {
    showError(e.status === 401 ? "Sign-in refused: " + e.message : e);
    return;
  }
  sessionStorage.setItem(KEY, token);
  document.getElementById("token").value = "";
  if (!location.hash || location.hash === "#/") location.hash = "#/overview";
  route();
}

function signOut() {
  sessionStorage.removeItem(KEY);
  stopFollowing();
  location.hash = "";
  showSignIn();
}

// ---- routing ---------------------------------------------------------

let following = null; // the AbortController of a followed job's events

function stopFollowing() {
  if (following) following.abort();
  following = null;
}

async function route() {
  if (!sessionStorage.getItem(KEY)) return showSignIn();
  document.getElementById("sign-in").hidden = true;
  document.getElementById("nav").hidden = false;
  stopFollowing();
  clearError();
  const [, name, ...rest] = (location.hash || "#/overview").slice(1).split("/");
  const arg = rest.map(decodeURIComponent).join("/");
  for (const a of document.querySelectorAll("#nav a")) {
    const target = a.getAttribute("href").slice(2);
    const current = target === name || (target === "snapshots" && name === "snapshot") || (target === "jobs" && name === "job");
    if (current) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  const views = { overview, snapshots, snapshot, restore, jobs, job, health };
  const render = views[name] || overview;
  view(h("p", {}, "Loading…"));
  try {
    await render(arg);
  } catch (e) {
    if (e.status === 401) { sessionStorage.removeItem(KEY); showSignIn(); } else view(h("h1", {}, "This view could not be loaded"));
    showError(e);
  }
  const heading = document.querySelector("#view h1");
  if (heading) { heading.tabIndex = -1; heading.focus(); }
}

// ---- overview --------------------------------------------------------

function jobTable(list, caption) {
  if (!list.length) return h("p", {}, "No jobs.");
  return h("div", { class: "table-wrap" }, h("table", {},
    h("caption", { class: "skip" }, caption),
    h("thead", {}, h("tr", {}, ["Job", "Kind", "Target", "Status", "Created", "Finished", "Error"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, list.map((j) => h("tr", {},
      h("td", {}, h("a", { href: "#/job/" + j.id }, j.id)),
      h("td", {}, j.kind), h("td", {}, j.target), h("td", {}, statusCell(j.status)),
      h("td", {}, when(j.created)), h("td", {}, when(j.finished)),
      h("td", {}, j.error ? j.error.split("\n")[0].slice(0, 160) : ""))))));
}

// The registered hypervisors with their VMs, each VM's state, its guest
// agent's and the containers attached to it now.
function hypervisorTable(hvs) {
  if (!hvs.length) return h("p", { id: "hypervisors" }, "No hypervisor is registered (attache hypervisor add).");
  const attachedNow = hvs.flatMap((hv) => hv.vms.filter((v) => v.attached.length)).length;
  return h("div", { id: "hypervisors" },
    h("p", {}, `${hvs.length} hypervisor(s), ${hvs.reduce((a, hv) => a + hv.vms.length, 0)} VM(s); ` +
      (attachedNow ? `${attachedNow} VM(s) have a container attached now.` : "no container is attached now.")),
    hvs.map((hv) => [
      h("h3", {}, `${hv.name} (${hv.driver})`),
      h("p", { class: "meta" }, hv.driver === "libvirt" ? "domains of " : "VM sockets in ", h("code", {}, hv.vm_dir), "; datastores: ", hv.datastores.join("; ")),
      hv.error ? h("p", { class: "status-failed" }, hv.error) : null,
      hv.vms.length ? h("div", { class: "table-wrap" }, h("table", { "data-hypervisor": hv.name },
        h("caption", { class: "skip" }, "VMs of " + hv.name),
        h("thead", {}, h("tr", {}, ["VM", "State", "Guest agent", "Attached now"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, hv.vms.map((v) => h("tr", { "data-vm": hv.name + "/" + v.name },
          h("td", {}, `${hv.name}/${v.name}`), h("td", {}, v.state), h("td", {}, v.guest_agent),
          h("td", {}, v.attached.length ? v.attached.join(", ") : "none")))))) :
        hv.error ? null : h("p", {}, "No VM found."),
    ]));
}

async function overview() {
  const [snaps, jobList, hvs] = await Promise.all([api("/snapshots"), api("/jobs"), api("/hypervisors")]);
  const total = snaps.reduce((a, s) => a + (s.bytes || 0), 0);
  const stored = snaps.reduce((a, s) => a + (s.added_bytes || 0), 0);
  const recent = newestFirst(jobList);
  const failed = recent.filter((j) => j.status === "failed");
  const last = snaps.length ? snaps[snaps.length - 1] : null;
  view(
    h("h1", {}, "Overview"),
    h("div", { class: "cards" },
      h("div", { class: "card" }, h("span", { class: "n", id: "snapshot-count" }, snaps.length), "snapshots"),
      h("div", { class: "card" }, h("span", { class: "n" }, bytes(stored)), "stored in the repository"),
      h("div", { class: "card" }, h("span", { class: "n" }, bytes(total)), "of data in all snapshots"),
      h("div", { class: "card" }, h("span", { class: "n" }, stored ? (total / stored).toFixed(1) + "×" : "–"),
        "deduplication and compression"),
      h("div", { class: "card" }, h("span", { class: "n" }, failed.length), "failed jobs")),
    last && h("p", {}, "Last snapshot: ", h("a", { href: "#/snapshot/" + last.id }, last.id.slice(0, 12)),
      ` of ${last.source} (${last.plugin}), ${when(last.time)}.`),
    h("h2", {}, "Hypervisors and VMs"),
    hypervisorTable(hvs),
    h("h2", {}, "Failures"),
    failed.length ? jobTable(failed.slice(0, 10), "Failed jobs") : h("p", {}, "No failed jobs since the server started."),
    h("h2", {}, "Last jobs"),
    jobTable(recent.slice(0, 10), "Last jobs"),
  );
}

// ---- snapshots -------------------------------------------------------

async function snapshots() {
  const all = await api("/snapshots");
  const body = h("tbody", {});
  const count = h("p", { "aria-live": "polite" });
  const f = {
    target: h("input", { type: "text", id: "f-target", list: "targets" }),
    plugin: h("input", { type: "text", id: "f-plugin", list: "plugins" }),
    from: h("input", { type: "date", id: "f-from" }),
    to: h("input", { type: "date", id: "f-to" }),
  };
  const uniq = (k) => [...new Set(all.map((s) => s[k]))].sort();
  function fill() {
    const from = f.from.value ? Date.parse(f.from.value) / 1000 : -Infinity;
    const to = f.to.value ? Date.parse(f.to.value) / 1000 + 86400 : Infinity;
    const rows = all.filter((s) =>
      (!f.target.value || s.source.includes(f.target.value)) &&
      (!f.plugin.value || s.plugin === f.plugin.value) &&
      s.time >= from && s.time < to).reverse();
    count.textContent = `${rows.length} of ${all.length} snapshots`;
    body.replaceChildren(...rows.map((s) => h("tr", {},
      h("td", {}, h("a", { href: "#/snapshot/" + s.id }, s.id.slice(0, 12))),
      h("td", {}, when(s.time)), h("td", {}, s.source), h("td", {}, s.plugin),
      h("td", {}, s.items), h("td", {}, bytes(s.bytes)), h("td", {}, (s.warnings || []).length))));
  }
  for (const i of Object.values(f)) i.addEventListener("input", fill);
  const results = h("div", { id: "find-results", "aria-live": "polite" });
  const pattern = h("input", { type: "text", id: "find-pattern", required: true });
  async function find(ev) {
    ev.preventDefault();
    clearError();
    try {
      const hits = await api("/find?pattern=" + encodeURIComponent(pattern.value));
      results.replaceChildren(...present([hits.length ? h("div", { class: "table-wrap" }, h("table", {},
        h("thead", {}, h("tr", {}, ["Snapshot", "Time", "Source", "Item", "Kind", "Size"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, hits.slice(0, 500).map((x) => h("tr", {},
          h("td", {}, h("a", { href: "#/snapshot/" + x.snapshot }, x.snapshot.slice(0, 12))),
          h("td", {}, when(x.time)), h("td", {}, x.source), h("td", {}, x.id), h("td", {}, x.kind), h("td", {}, bytes(x.size))))))) :
        h("p", {}, "Nothing matches."), hits.length > 500 ? h("p", {}, `First 500 of ${hits.length} matches.`) : null]));
    } catch (e) { showError(e); }
  }
  view(
    h("h1", {}, "Snapshots"),
    h("datalist", { id: "targets" }, uniq("source").map((v) => h("option", { value: v }))),
    h("datalist", { id: "plugins" }, uniq("plugin").map((v) => h("option", { value: v }))),
    h("form", { class: "cards", onsubmit: (e) => e.preventDefault() },
      h("div", {}, h("label", { for: "f-target" }, "Target"), f.target),
      h("div", {}, h("label", { for: "f-plugin" }, "Plugin"), f.plugin),
      h("div", {}, h("label", { for: "f-from" }, "From"), f.from),
      h("div", {}, h("label", { for: "f-to" }, "To"), f.to)),
    count,
    h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, ["Snapshot", "Time", "Target", "Plugin", "Items", "Size", "Warnings"].map((t) => h("th", { scope: "col" }, t)))),
      body)),
    h("h2", {}, "Search all snapshots"),
    h("form", { onsubmit: find },
      h("label", { for: "find-pattern" }, "Glob on the name, a whole id (with /), or a subject"),
      pattern, " ", h("button", { type: "submit", id: "find-go" }, "Find")),
    results);
  fill();
}

// ---- one snapshot: lazy tree -----------------------------------------

const PAGE = 500;

function details(panel, c) {
  const r = c.record;
  const rows = [["Id", c.id]];
  if (r) {
    rows.push(["Kind", r.kind], ["Size", bytes(r.size)]);
    if (r.mode !== undefined) rows.push(["Mode", "0" + (r.mode & 0o7777).toString(8)]);
    if (r.uid !== undefined) rows.push(["Owner", `${r.uid}:${r.gid}`]);
    if (r.mtime) rows.push(["Modified", when(r.mtime.seconds)]);
    if (r.symlink_target) rows.push(["Link to", r.symlink_target]);
    if (r.hardlink_target) rows.push(["Hard link to", r.hardlink_target]);
    for (const [k, v] of r.attributes || []) rows.push([k, v]);
  } else {
    rows.push(["Kind", "path above backed-up items"]);
  }
  if (c.below) rows.push(["Items below", c.below]);
  panel.replaceChildren(h("h2", {}, "Item"), h("dl", { class: "props", id: "item-details" },
    rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])));
}

async function snapshot(id) {
  const s = await api("/snapshots/" + encodeURIComponent(id));
  const selected = new Set(state.restore.snapshot === s.id ? state.restore.items : []);
  const panel = h("div", { id: "item-panel" }, h("p", {}, "Pick an item's name to see its metadata."));
  const chosen = h("p", { id: "chosen", "aria-live": "polite" });
  const restoreBtn = h("button", { type: "button", class: "primary", id: "restore-selected", onclick: () => {
    state.restore = { snapshot: s.id, items: [...selected] };
    location.hash = "#/restore";
  } }, "Restore selected…");
  function noteSelection() {
    chosen.textContent = selected.size ? `${selected.size} selected: ${[...selected].slice(0, 5).join(", ")}${selected.size > 5 ? ", …" : ""}` : "Nothing selected: a restore takes the whole snapshot.";
  }
  // Loads one page of `dir`'s children into `ul`.
  async function load(ul, dir, offset) {
    const q = new URLSearchParams({ offset, limit: PAGE });
    if (dir !== null) q.set("dir", dir);
    const page = await api(`/snapshots/${encodeURIComponent(s.id)}/children?` + q);
    const more = ul.querySelector(":scope > li.more");
    if (more) more.remove();
    for (const c of page.children) ul.append(node(c));
    if (page.offset + page.children.length < page.total) {
      ul.append(h("li", { class: "more" }, h("button", { type: "button", onclick: async (e) => {
        e.target.disabled = true;
        try { await load(ul, dir, page.offset + page.children.length); } catch (err) { showError(err); e.target.disabled = false; }
      } }, `Show more (${page.total - page.offset - page.children.length} left)`)));
    }
    return page;
  }
  function node(c) {
    const li = h("li", {});
    const check = h("input", { type: "checkbox", id: "sel-" + c.id, "aria-label": "Select " + c.id, checked: selected.has(c.id) });
    check.addEventListener("change", () => { if (check.checked) selected.add(c.id); else selected.delete(c.id); noteSelection(); });
    const kind = c.record ? c.record.kind : "directory";
    const meta = h("span", { class: "meta" }, ` ${kind}${c.record && c.record.kind !== "directory" ? ", " + bytes(c.record.size) : ""}${c.below ? `, ${c.below} below` : ""}`);
    const name = h("button", { type: "button", class: "name", "data-id": c.id, onclick: () => details(panel, c) }, c.name);
    if (c.below) {
      const sub = h("ul", { hidden: true });
      let loaded = false;
      const toggle = h("button", { type: "button", class: "toggle", "aria-expanded": "false", "aria-label": "Open " + c.name, "data-dir": c.id }, "▸");
      toggle.addEventListener("click", async () => {
        const open = toggle.getAttribute("aria-expanded") === "true";
        if (!open && !loaded) {
          toggle.disabled = true;
          try { await load(sub, c.id, 0); loaded = true; } catch (e) { showError(e); toggle.disabled = false; return; }
          toggle.disabled = false;
        }
        toggle.setAttribute("aria-expanded", String(!open));
        toggle.setAttribute("aria-label", (open ? "Open " : "Close ") + c.name);
        toggle.textContent = open ? "▸" : "▾";
        sub.hidden = open;
      });
      li.append(toggle, check, " ", name, meta, sub);
    } else {
      li.append(h("span", { class: "leaf", "aria-hidden": "true" }), check, " ", name, meta);
    }
    return li;
  }
  const root = h("ul", { class: "tree", id: "tree", "aria-label": "Items of snapshot " + s.id.slice(0, 12) });
  view(
    h("h1", {}, "Snapshot " + s.id.slice(0, 12)),
    h("p", {}, `${s.source} · ${s.plugin} ${s.plugin_version || ""} · ${when(s.time)} · ${s.items} items · ${bytes(s.bytes)}`),
    (s.warnings || []).length ? h("details", {}, h("summary", {}, `${s.warnings.length} warnings`),
      h("ul", {}, s.warnings.map((w) => h("li", {}, `${w.id}: ${w.message}`)))) : null,
    h("div", { class: "split" }, h("div", {}, h("h2", {}, "Items"), root), panel),
    chosen, restoreBtn);
  noteSelection();
  await load(root, null, 0);
}

// ---- restore ---------------------------------------------------------

async function restore() {
  const r = state.restore;
  const snap = h("input", { type: "text", id: "r-snapshot", value: r.snapshot, required: true });
  const items = h("textarea", { id: "r-items", rows: 4 }, r.items.join("\n"));
  const dest = (value, label, checked) => h("div", {},
    h("input", { type: "radio", name: "dest", id: "dest-" + value, value, checked }),
    h("label", { class: "inline", for: "dest-" + value }, label));
  const dir = h("input", { type: "text", id: "r-dir", placeholder: "/srv/restore" });
  const vm = h("input", { type: "text", id: "r-vm", placeholder: "hv1/web01 or hv1/web01:/srv/restore" });
  const as = h("input", { type: "text", id: "r-as" });
  const overwrite = h("input", { type: "checkbox", id: "r-overwrite" });
  const summary = h("div", { id: "r-summary", "aria-live": "polite" });
  function request() {
    const kind = document.querySelector("input[name=dest]:checked").value;
    const to = kind === "original" ? "local" : kind === "dir" ? "local:" + dir.value.trim() : vm.value.trim();
    const req = { snapshot: snap.value.trim(), items: items.value.split("\n").map((x) => x.trim()).filter(Boolean), to, overwrite: overwrite.checked };
    if (as.value.trim()) req.as = as.value.trim();
    return req;
  }
  function review(ev) {
    ev.preventDefault();
    clearError();
    const req = request();
    summary.replaceChildren(
      h("h2", {}, "Summary"),
      h("dl", { class: "props" },
        h("dt", {}, "Snapshot"), h("dd", {}, req.snapshot),
        h("dt", {}, "Items"), h("dd", {}, req.items.length ? h("ul", {}, req.items.map((i) => h("li", {}, i))) : "the whole snapshot"),
        h("dt", {}, "Destination"), h("dd", { id: "r-to" }, req.to),
        req.as ? [h("dt", {}, "As"), h("dd", {}, req.as)] : null,
        h("dt", {}, "Existing items"), h("dd", {}, req.overwrite ? "are replaced" : "are kept: the restore stops rather than overwrite")),
      h("button", { type: "button", class: "primary", id: "r-confirm", onclick: async () => {
        clearError();
        try {
          const job = await api("/jobs", { method: "POST", body: { kind: "restore", restore: req } });
          location.hash = "#/job/" + job.id;
        } catch (e) { showError(e); }
      } }, "Start the restore"),
      h("button", { type: "button", onclick: () => summary.replaceChildren() }, "Change"));
    summary.querySelector("#r-confirm").focus();
  }
  view(
    h("h1", {}, "Restore"),
    r.items.length ? null : h("p", {}, "Pick items in a ", h("a", { href: "#/snapshots" }, "snapshot"), ", or type a snapshot id and item ids."),
    h("form", { onsubmit: review },
      h("label", { for: "r-snapshot" }, "Snapshot"), snap,
      h("label", { for: "r-items" }, "Items, one id a line (none: all)"), items,
      h("fieldset", {}, h("legend", {}, "Destination"),
        dest("original", "Their original place on this machine", true),
        dest("dir", "Another directory on this machine", false), h("label", { for: "r-dir" }, "Directory"), dir,
        dest("vm", "A VM, or a directory in it", false), h("label", { for: "r-vm" }, "VM (HYPERVISOR/VM[:DIR])"), vm),
      h("label", { for: "r-as" }, "Restore the one item under another id (optional)"), as,
      h("div", {}, overwrite, h("label", { class: "inline", for: "r-overwrite" }, "Overwrite items that exist")),
      h("button", { type: "submit", id: "r-review" }, "Review")),
    summary);
  for (const [input, value] of [[dir, "dir"], [vm, "vm"]]) {
    input.addEventListener("input", () => { document.getElementById("dest-" + value).checked = true; });
  }
}

// ---- jobs ------------------------------------------------------------

async function jobs() {
  const list = newestFirst(await api("/jobs"));
  const target = h("input", { type: "text", id: "b-target", value: "local", required: true });
  const plugin = h("input", { type: "text", id: "b-plugin", value: "filesystem", required: true });
  const include = h("textarea", { id: "b-include", rows: 3, required: true });
  async function start(ev) {
    ev.preventDefault();
    clearError();
    const backup = { target: target.value.trim(), plugin: plugin.value.trim(), include: include.value.split("\n").map((x) => x.trim()).filter(Boolean) };
    try {
      const job = await api("/jobs", { method: "POST", body: { kind: "backup", backup } });
      location.hash = "#/job/" + job.id;
    } catch (e) { showError(e); }
  }
  view(
    h("h1", {}, "Jobs"),
    h("h2", {}, "Start a backup"),
    h("form", { onsubmit: start },
      h("label", { for: "b-target" }, "Target (local or HYPERVISOR/VM)"), target,
      h("label", { for: "b-plugin" }, "Plugin"), plugin,
      h("label", { for: "b-include" }, "Include, one a line"), include,
      h("div", {}, h("button", { type: "submit", class: "primary", id: "b-start" }, "Start the backup"))),
    h("h2", {}, "History"),
    jobTable(list, "Every job of this server"));
}

// Reads a job's server-sent events (fetch, since EventSource cannot send
// the token) and calls `on(event, data)` for each.
async function events(id, signal, on) {
  const r = await fetch(`/jobs/${encodeURIComponent(id)}/events`, {
    headers: { Authorization: "Bearer " + sessionStorage.getItem(KEY) }, signal,
  });
  if (!r.ok) {
    const text = await r.text();
    let msg = text;
    try { msg = JSON.parse(text).error; } catch (_) { /* as sent */ }
    throw new ApiError(r.status, msg);
  }
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let end;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let name = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (data) on(name, JSON.parse(data));
    }
  }
}

async function job(id) {
  const j = await api("/jobs/" + encodeURIComponent(id));
  const status = h("span", { id: "job-status", class: "status-" + j.status }, j.status);
  const progress = h("p", { class: "progress", id: "job-progress", "aria-live": "polite" });
  const outcome = h("div", { id: "job-outcome" });
  const cancel = h("button", { type: "button", class: "danger", id: "job-cancel", onclick: async () => {
    clearError();
    try { await api("/jobs/" + encodeURIComponent(id), { method: "DELETE" }); cancel.disabled = true; cancel.textContent = "Cancelling…"; } catch (e) { showError(e); }
  } }, "Cancel the job");
  function show(v) {
    status.textContent = v.status;
    status.className = "status-" + v.status;
    setProgress(v.progress);
    const done = ["succeeded", "failed", "cancelled", "interrupted"].includes(v.status);
    cancel.hidden = done;
    outcome.replaceChildren(...present([
      v.error ? [h("h2", {}, v.status === "failed" ? "Why it failed" : "Error"), h("pre", { id: "job-error" }, v.error)] : null,
      v.result ? [h("h2", {}, "Result"), h("pre", { id: "job-result" }, JSON.stringify(v.result, null, 2))] : null,
    ]));
    if (v.status === "succeeded" && v.kind === "backup" && v.result && v.result.id) {
      outcome.append(h("p", {}, h("a", { href: "#/snapshot/" + v.result.id }, "Browse the snapshot")));
    }
  }
  function setProgress(p) {
    if (p) progress.textContent = `${p.items} items, ${bytes(p.bytes)}`;
  }
  const req = j.request[j.kind] || {};
  view(
    h("h1", {}, `Job ${j.id}`),
    h("dl", { class: "props" },
      h("dt", {}, "Kind"), h("dd", {}, j.kind),
      h("dt", {}, "Target"), h("dd", {}, j.target),
      h("dt", {}, "Status"), h("dd", {}, status),
      h("dt", {}, "Created"), h("dd", {}, when(j.created)),
      j.kind === "verify" ? [h("dt", {}, "Read data"), h("dd", {}, req.read_data ? "yes" : "no")] :
      j.kind === "backup" ? [h("dt", {}, "Include"), h("dd", {}, (req.include || []).join(", "))] :
        [h("dt", {}, "Snapshot"), h("dd", {}, req.snapshot), h("dt", {}, "Items"), h("dd", {}, (req.items || []).join(", ") || "all"),
          h("dt", {}, "To"), h("dd", {}, req.to)]),
    progress, cancel, outcome);
  show(j);
  if (["succeeded", "failed", "cancelled", "interrupted"].includes(j.status)) return;
  const ctl = new AbortController();
  following = ctl;
  events(id, ctl.signal, (name, data) => {
    if (name === "progress") setProgress(data);
    else if (name === "status") show(data.job);
  }).catch((e) => { if (!ctl.signal.aborted) showError(e); });
}

// ---- repository health -----------------------------------------------

// What a verify job found, from its view: outcome, counts, problems and
// the damaged items of each snapshot.
function verifyReport(v) {
  if (!["succeeded", "failed", "cancelled", "interrupted"].includes(v.status)) {
    return h("p", { id: "health-outcome", class: "status-running" }, "Checking the repository…");
  }
  if (v.status !== "succeeded" || !v.result) {
    return [h("p", { id: "health-outcome", class: "status-failed" }, `The verify ${v.status}; the repository was not checked.`),
      v.error ? h("pre", { id: "health-error" }, v.error) : null];
  }
  const r = v.result;
  const bad = Object.entries(r.bad_blobs || {});
  const affected = Object.entries(r.affected || {});
  return [
    h("p", { id: "health-outcome", class: r.clean ? "status-succeeded" : "status-failed" },
      r.clean ? "Clean: no errors found." : `Damaged: ${(r.errors || []).length} error(s) and ${bad.length} damaged chunk(s).`),
    h("p", {}, `Checked ${r.snapshots} snapshot(s) and ${r.packs} pack(s)` +
      (r.read_data ? `, ${r.blobs_checked} chunk(s) read and verified.` : " (structure only: the packs' bytes were not read)."),
      " Finished ", when(v.finished), "."),
    (r.errors || []).length ? [h("h2", {}, "Problems"), h("ul", { id: "health-errors" }, r.errors.map((e) => h("li", {}, e)))] : null,
    bad.length ? [h("h2", {}, "Damaged chunks"), h("ul", { id: "health-chunks" }, bad.map(([b, why]) => h("li", {}, h("code", {}, b.slice(0, 16)), ": ", why)))] : null,
    affected.length ? [h("h2", {}, "Damaged items"), h("div", { id: "health-affected" }, affected.map(([snap, items]) => [
      h("h3", {}, "Snapshot ", h("a", { href: "#/snapshot/" + snap }, snap.slice(0, 12))),
      h("ul", {}, items.map((i) => h("li", {}, i === "*" ? "the snapshot's item list or file itself" : i)))]))] : null,
  ];
}

async function health() {
  const list = newestFirst((await api("/jobs")).filter((j) => j.kind === "verify"));
  const last = list[0];
  const panel = h("div", { id: "health-last", "aria-live": "polite" });
  const readData = h("input", { type: "checkbox", id: "v-read-data", checked: true });
  const startBtn = h("button", { type: "submit", class: "primary", id: "v-start" }, "Start a verify");
  function show(v) {
    const done = ["succeeded", "failed", "cancelled", "interrupted"].includes(v.status);
    startBtn.disabled = !done;
    panel.replaceChildren(...present([
      h("p", {}, "Verify job ", h("a", { href: "#/job/" + v.id }, v.id), ", started ", when(v.created),
        v.request.verify && v.request.verify.read_data ? ", reading every pack" : ", structure only", ": ",
        h("span", { id: "health-status", class: "status-" + v.status }, v.status), "."),
      verifyReport(v)]));
  }
  function follow(v) {
    show(v);
    if (["succeeded", "failed", "cancelled", "interrupted"].includes(v.status)) return;
    stopFollowing();
    const ctl = new AbortController();
    following = ctl;
    events(v.id, ctl.signal, (name, data) => { if (name === "status") show(data.job); })
      .catch((e) => { if (!ctl.signal.aborted) showError(e); });
  }
  async function start(ev) {
    ev.preventDefault();
    clearError();
    try {
      follow(await api("/jobs", { method: "POST", body: { kind: "verify", verify: { read_data: readData.checked } } }));
    } catch (e) { showError(e); }
  }
  view(
    h("h1", {}, "Repository health"),
    h("h2", {}, "Last verify"),
    panel,
    h("h2", {}, "Check the repository"),
    h("form", { onsubmit: start },
      h("div", {}, readData, h("label", { class: "inline", for: "v-read-data" }, "Read every byte of every pack (slower; finds damaged data, not only missing files)")),
      h("div", {}, startBtn)),
    list.length > 1 ? [h("h2", {}, "Earlier verifies"), jobTable(list.slice(1, 10), "Earlier verify jobs")] : null);
  if (last) follow(last);
  else panel.replaceChildren(h("p", { id: "health-outcome" }, "No verify has run since the server started."));
}

// ---- start -----------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("sign-in-form").addEventListener("submit", signIn);
  document.getElementById("sign-out").addEventListener("click", signOut);
  window.addEventListener("hashchange", route);
  route();
});
