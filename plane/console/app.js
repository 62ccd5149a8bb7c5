// volt-plane console. Plain ES module, no build step, no external assets:
// volt-plane embeds this file and serves it from /console/app.js.
// Every piece of server data reaches the page through textContent or
// attribute values, never as markup.

// ---------------------------------------------------------------- helpers

const $main = () => document.getElementById('main');

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const svgNs = 'http://www.w3.org/2000/svg';
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(svgNs, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(method, path, body) {
  const init = { method, headers: { accept: 'application/json' }, credentials: 'same-origin' };
  if (method !== 'GET') {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body ?? {});
  }
  return answer(await fetch(path, init), path);
}

// The API envelope of a response: its data, or an ApiError.
async function answer(r, path) {
  let json = null;
  try { json = await r.json(); } catch { /* not JSON */ }
  if (r.status === 401 && path !== '/api/auth/login') { showLogin(); throw new ApiError(401, 'Auth::Required', 'Please log in'); }
  if (!r.ok || !json || json.status !== 'success') {
    throw new ApiError(r.status, json?.code ?? 'Http', json?.message ?? `HTTP ${r.status}`);
  }
  return json.data;
}

function announce(text) {
  const el = document.getElementById('announce');
  el.textContent = '';
  setTimeout(() => { el.textContent = text; }, 30);
}

async function copyText(text, button) {
  let ok = false;
  try { await navigator.clipboard.writeText(text); ok = true; } catch {
    // Not a secure context (plain http to a non-loopback host): fall back.
    const ta = h('textarea', { 'aria-hidden': 'true', style: 'position:fixed;left:-9999px' }, text);
    document.body.append(ta); ta.select();
    try { ok = document.execCommand('copy'); } catch { ok = false; }
    ta.remove();
  }
  if (button) { const old = button.textContent; button.textContent = ok ? 'Copied' : 'Copy failed'; setTimeout(() => { button.textContent = old; }, 1500); }
  announce(ok ? 'Copied to the clipboard' : 'Could not copy; select the text instead');
}

function copyBox(label, text, id) {
  const btn = h('button', { type: 'button', 'aria-label': `Copy ${label}` }, 'Copy');
  btn.addEventListener('click', () => copyText(text, btn));
  return h('div', {},
    h('div', { class: 'muted' }, label),
    h('div', { class: 'copybox' }, h('code', { id, tabindex: '0' }, text), btn));
}

function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString();
}

function ago(iso) {
  if (!iso) return 'never';
  const s = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  if (s < 60) return `${Math.max(s, 0)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

function errorBox(e) {
  return h('p', { class: 'error', role: 'alert' }, e instanceof ApiError ? `${e.message} (${e.code})` : String(e));
}

// ---------------------------------------------------------------- statuses

// The eleven statuses. `label` is the name VOLT's documentation uses
// (the wire id for all but two, which the docs shorten).
export const STATUSES = [
  { id: 'waiting-for-connection', label: 'waiting-for-connection', tone: 'idle', help: 'Created; the installer has not called in yet.' },
  { id: 'healthcheck-received', label: 'healthcheck-received', tone: 'info', help: 'The installer enrolled with the one-time token.' },
  { id: 'preparing-environment', label: 'preparing-environment', tone: 'info', help: 'The daemon is bringing its services up.' },
  { id: 'dependency-installation-failed', label: 'dependency-install-failed', tone: 'bad', help: 'A managed service could not be installed or started.' },
  { id: 'operating-system-not-supported', label: 'os-not-supported', tone: 'bad', help: 'The host operating system is not supported.' },
  { id: 'connected', label: 'connected', tone: 'ok', help: 'The daemon is registered and heartbeating.' },
  { id: 'disconnected', label: 'disconnected', tone: 'warn', help: 'No daemon connection or no recent heartbeat.' },
  { id: 'deleting', label: 'deleting', tone: 'info', help: 'The daemon is uninstalling the cluster.' },
  { id: 'delete-failed', label: 'delete-failed', tone: 'bad', help: 'Deletion did not complete.' },
  { id: 'updating', label: 'updating', tone: 'info', help: 'The daemon is updating itself.' },
  { id: 'update-failed', label: 'update-failed', tone: 'bad', help: 'The update did not complete.' },
];
const STATUS = Object.fromEntries(STATUSES.map((st) => [st.id, st]));

function badge(status, id) {
  const st = STATUS[status] ?? { label: status, tone: 'idle', help: '' };
  return h('span', { class: 'badge', 'data-status': status, 'data-tone': st.tone, title: st.help, id }, st.label);
}

function setBadge(el, status) {
  const st = STATUS[status] ?? { label: status, tone: 'idle', help: '' };
  el.dataset.status = status; el.dataset.tone = st.tone; el.title = st.help; el.textContent = st.label;
}

// ---------------------------------------------------------------- live events

// One EventSource for the current view; views register handlers.
const live = { es: null, handlers: {}, cluster: null };

function openEvents(cluster, handlers) {
  closeEvents();
  live.handlers = handlers;
  live.cluster = cluster;
  const url = cluster ? `/api/events?cluster=${encodeURIComponent(cluster)}` : '/api/events';
  const es = new EventSource(url);
  live.es = es;
  const status = document.getElementById('live');
  es.addEventListener('hello', () => { status.textContent = 'live'; });
  es.onerror = () => { status.textContent = 'reconnecting…'; };
  for (const name of ['statuses', 'clusters', 'log', 'metrics', 'resync']) {
    es.addEventListener(name, (ev) => {
      const fn = live.handlers[name];
      if (!fn) return;
      let data = null;
      try { data = JSON.parse(ev.data); } catch { return; }
      fn(data);
    });
  }
}

function closeEvents() {
  if (live.es) { live.es.close(); live.es = null; }
  live.handlers = {};
}

// ---------------------------------------------------------------- login

let loggedIn = false;

function showLogin(message) {
  loggedIn = false;
  closeEvents();
  document.getElementById('logout').hidden = true;
  document.getElementById('live').textContent = 'logged out';
  const main = $main();
  const input = h('input', { id: 'login-token', type: 'password', autocomplete: 'current-password', required: true, 'aria-describedby': 'login-help' });
  const err = h('p', { class: 'error', role: 'alert', id: 'login-error' }, message ?? '');
  const form = h('form', { class: 'card login', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title' }, 'Log in to volt-plane'),
    h('div', { class: 'field' }, h('label', { for: 'login-token' }, 'Admin token'), input),
    h('p', { class: 'muted', id: 'login-help' },
      'volt-plane printed the admin token once, at its first start (or it is the VOLT_PLANE_ADMIN_TOKEN it was started with).'),
    err,
    h('button', { type: 'submit', class: 'primary', id: 'login-submit' }, 'Log in'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.textContent = '';
    try {
      await api('POST', '/api/auth/login', { token: input.value.trim() });
      input.value = '';
      loggedIn = true;
      document.getElementById('logout').hidden = false;
      route();
    } catch (e) {
      err.textContent = e.status === 401 ? 'That is not the admin token.' : e.message;
      input.focus();
    }
  });
  main.replaceChildren(form);
  input.focus();
}

async function logout() {
  try { await api('POST', '/api/auth/logout', {}); } catch { /* already out */ }
  showLogin('Logged out.');
}

// ---------------------------------------------------------------- cluster list

const PAGE_SIZE = 50;
const listState = { q: '', status: '', offset: 0 };

async function viewList() {
  const main = $main();
  const nameInput = h('input', { id: 'filter-name', type: 'search', value: listState.q, placeholder: 'name or id', 'aria-describedby': 'filter-help' });
  const statusSel = h('select', { id: 'filter-status' },
    h('option', { value: '' }, 'All statuses'),
    STATUSES.map((st) => h('option', { value: st.id, selected: st.id === listState.status }, st.label)));
  const chips = h('div', { class: 'chips', role: 'group', 'aria-label': 'Clusters per status' });
  const tbody = h('tbody');
  const summary = h('p', { class: 'muted', id: 'list-summary', role: 'status' }, 'Loading…');
  const prev = h('button', { type: 'button', id: 'page-prev' }, '← Previous');
  const next = h('button', { type: 'button', id: 'page-next' }, 'Next →');
  const createBtn = h('button', { type: 'button', class: 'primary', id: 'create-open' }, 'Create cluster');
  const table = h('table', { id: 'cluster-table', 'aria-describedby': 'list-summary' },
    h('caption', { class: 'sr-only' }, 'Clusters'),
    h('thead', {}, h('tr', {}, ['Name', 'Status', 'Daemon', 'Version', 'Last heartbeat', 'Created'].map((c) => h('th', { scope: 'col' }, c)))),
    tbody);
  main.replaceChildren(
    h('h1', {}, 'Clusters'),
    h('div', { class: 'toolbar' },
      h('div', {}, h('label', { for: 'filter-name' }, 'Filter by name'), nameInput),
      h('div', {}, h('label', { for: 'filter-status' }, 'Status'), statusSel),
      h('span', { style: 'flex:1' }),
      createBtn),
    h('p', { id: 'filter-help', class: 'sr-only' }, 'The list updates as you type.'),
    chips, table, h('div', { class: 'pager' }, prev, next, summary));

  const rows = new Map();
  let loading = 0;
  async function load() {
    const my = ++loading;
    const params = new URLSearchParams({ limit: PAGE_SIZE, offset: listState.offset });
    if (listState.q) params.set('q', listState.q);
    if (listState.status) params.set('status', listState.status);
    let page;
    try { page = await api('GET', `/api/clusters?${params}`); } catch (e) { if (my === loading) summary.replaceChildren(errorBox(e)); return; }
    if (my !== loading) return;
    rows.clear();
    tbody.replaceChildren(...page.teamClusters.map((c) => {
      const b = badge(c.status);
      const daemon = h('td', { 'data-col': 'daemon' }, c.connected ? 'online' : 'offline');
      const hb = h('td', { 'data-col': 'heartbeat', title: fmtTime(c.lastHeartbeatAt) }, ago(c.lastHeartbeatAt));
      const version = h('td', { 'data-col': 'version' }, c.installedVersion ?? '—');
      const tr = h('tr', { 'data-cluster-id': c._id },
        h('td', {}, h('a', { href: `#/clusters/${encodeURIComponent(c._id)}` }, c.name), h('div', { class: 'muted mono' }, c._id)),
        h('td', {}, b), daemon, version, hb, h('td', {}, fmtTime(c.createdAt)));
      rows.set(c._id, { b, daemon, hb, version });
      return tr;
    }));
    if (page.teamClusters.length === 0) tbody.append(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, page.total === 0 && !listState.q && !listState.status ? 'No clusters yet: create one.' : 'No cluster matches.')));
    const first = page.total === 0 ? 0 : page.offset + 1;
    summary.textContent = `${first}–${page.offset + page.teamClusters.length} of ${page.total}`;
    prev.disabled = page.offset === 0;
    next.disabled = page.offset + page.limit >= page.total;
    const total = Object.values(page.counts).reduce((a, b) => a + b, 0);
    chips.replaceChildren(
      h('button', { type: 'button', 'aria-pressed': String(!listState.status), onclick: () => setStatus('') }, `all ${total}`),
      ...STATUSES.filter((st) => page.counts[st.id]).map((st) =>
        h('button', { type: 'button', 'aria-pressed': String(listState.status === st.id), 'data-status': st.id, onclick: () => setStatus(st.id) }, `${st.label} ${page.counts[st.id]}`)));
  }
  function setStatus(st) { listState.status = st; listState.offset = 0; statusSel.value = st; load(); }
  let typing;
  nameInput.addEventListener('input', () => { clearTimeout(typing); typing = setTimeout(() => { listState.q = nameInput.value.trim(); listState.offset = 0; load(); }, 200); });
  statusSel.addEventListener('change', () => setStatus(statusSel.value));
  prev.addEventListener('click', () => { listState.offset = Math.max(0, listState.offset - PAGE_SIZE); load(); });
  next.addEventListener('click', () => { listState.offset += PAGE_SIZE; load(); });
  createBtn.addEventListener('click', () => openCreate(load));

  let refetch;
  const soon = () => { clearTimeout(refetch); refetch = setTimeout(load, 300); };
  openEvents(null, {
    statuses: (list) => {
      let filtered = false;
      for (const st of list) {
        const row = rows.get(st.id);
        if (!row) continue;
        if (st.deleted) { filtered = true; continue; }
        setBadge(row.b, st.status);
        row.daemon.textContent = st.connected ? 'online' : 'offline';
        row.hb.textContent = ago(st.lastHeartbeatAt);
        row.version.textContent = st.installedVersion ?? '—';
        if (listState.status && st.status !== listState.status) filtered = true;
      }
      // Counts per status moved: refresh them (and a filtered page) shortly.
      if (filtered || list.length) soon();
    },
    clusters: soon,
    resync: soon,
  });
  await load();
}

function openCreate(reload) {
  const name = h('input', { id: 'create-name', maxlength: 128, autocomplete: 'off' });
  const root = h('input', { id: 'create-root', placeholder: '/opt/volt/team-clusters', autocomplete: 'off' });
  const err = h('p', { class: 'error', role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary', id: 'create-submit' }, 'Create');
  const cancel = h('button', { type: 'button' }, 'Cancel');
  const form = h('form', { method: 'dialog' },
    h('h2', { id: 'create-title' }, 'Create a cluster'),
    h('div', { class: 'field' }, h('label', { for: 'create-name' }, 'Name'), name),
    h('div', { class: 'field' }, h('label', { for: 'create-root' }, 'Install root on the host (optional)'), root),
    err, h('div', { class: 'toolbar' }, submit, cancel));
  const dlg = h('dialog', { 'aria-labelledby': 'create-title', id: 'create-dialog' }, form);
  document.body.append(dlg);
  cancel.addEventListener('click', () => dlg.close());
  dlg.addEventListener('close', () => dlg.remove());
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    submit.disabled = true;
    try {
      const body = {};
      if (name.value.trim()) body.name = name.value.trim();
      if (root.value.trim()) body.installRoot = root.value.trim();
      const created = await api('POST', '/api/clusters', body);
      showInstall(dlg, created, 'Cluster created');
      reload?.();
    } catch (e) { err.textContent = e.message; submit.disabled = false; }
  });
  dlg.showModal();
  name.focus();
}

// The one-liners of a new (or re-tokened) cluster, in a dialog.
function showInstall(dlg, data, title) {
  const id = data.teamCluster._id;
  const done = h('button', { type: 'button', class: 'primary', id: 'install-done' }, 'Done');
  const open = h('a', { class: 'button', href: `#/clusters/${encodeURIComponent(id)}`, id: 'install-open' }, 'Open the cluster');
  dlg.replaceChildren(
    h('h2', { id: 'install-title' }, `${title}: ${data.teamCluster.name}`),
    h('p', {}, 'Run one of these on the host. The enrollment token in them works once and is not shown again.'),
    copyBox('Install with the reference installer', data.installCommand, 'install-command'),
    copyBox('Or enroll an existing voltd', data.voltdCommand, 'voltd-command'),
    h('div', { class: 'toolbar' }, done, open));
  dlg.setAttribute('aria-labelledby', 'install-title');
  done.addEventListener('click', () => dlg.close());
  open.addEventListener('click', () => dlg.close());
  if (!dlg.open) { document.body.append(dlg); dlg.showModal(); }
  done.focus();
}

// ---------------------------------------------------------------- charts

const CHARTS = [
  { key: 'cpu', title: 'CPU', unit: '%', max: 100, color: '#1f5fbf' },
  { key: 'memory', title: 'Memory', unit: '%', max: 100, color: '#7b3fb3' },
  { key: 'disk', title: 'Disk', unit: '%', max: 100, color: '#a35c00' },
  { key: 'latencyMs', title: 'Response time (cloud latency)', unit: 'ms', color: '#1b7f3b' },
  { key: 'netInKbps', title: 'Network in', unit: 'KB/s', color: '#0b7285', pair: { key: 'netOutKbps', color: '#c2255c', label: 'out' } },
  { key: 'diskReadMbps', title: 'Disk read', unit: 'MB/s', color: '#5c7cfa', pair: { key: 'diskWriteMbps', color: '#e8590c', label: 'write' } },
];

function chartCard(def) {
  const svg = s('svg', { viewBox: '0 0 600 140', preserveAspectRatio: 'none', role: 'img', 'aria-label': `${def.title}: no data yet`, 'data-chart': def.key, 'data-points': 0 });
  const value = h('span', { class: 'muted', 'data-value': def.key }, '—');
  const card = h('figure', { class: 'chart' }, h('h3', {}, h('span', {}, def.title + (def.pair ? ` / ${def.pair.label}` : '')), value), svg);
  card.figcaption = value;
  return { card, svg, value };
}

function drawChart(c, def, series, windowSecs) {
  const { svg, value } = c;
  svg.replaceChildren();
  const W = 600, H = 140, now = Date.now() / 1000, t0 = now - windowSecs;
  const lines = [{ key: def.key, color: def.color }];
  if (def.pair) lines.push(def.pair);
  let max = def.max ?? 0;
  if (!def.max) for (const l of lines) for (const v of series[l.key] ?? []) if (v !== null && v > max) max = v;
  if (max <= 0) max = 1;
  for (let i = 1; i < 4; i++) svg.append(s('line', { class: 'grid', x1: 0, x2: W, y1: (H * i) / 4, y2: (H * i) / 4 }));
  svg.append(s('text', { class: 'axis', x: 4, y: 11 }, `${max.toFixed(def.max ? 0 : 1)} ${def.unit}`));
  let count = 0;
  for (const l of lines) {
    const ys = series[l.key] ?? [];
    const pts = [];
    series.t.forEach((t, i) => {
      const v = ys[i];
      if (v === null || v === undefined || t < t0) return;
      pts.push(`${(((t - t0) / windowSecs) * W).toFixed(1)},${(H - (v / max) * (H - 14)).toFixed(1)}`);
    });
    count = Math.max(count, pts.length);
    if (pts.length) {
      svg.append(s('polyline', { class: 'line', stroke: l.color, points: pts.join(' ') }));
      // The newest point as a dot: visible even when it is the only one.
      const [x, y] = pts[pts.length - 1].split(',');
      svg.append(s('ellipse', { cx: x, cy: y, rx: 4, ry: 3, fill: l.color }));
    }
  }
  svg.setAttribute('data-points', count);
  const last = (key) => { const ys = series[key] ?? []; for (let i = ys.length - 1; i >= 0; i--) if (ys[i] !== null) return ys[i]; return null; };
  const v1 = last(def.key), v2 = def.pair ? last(def.pair.key) : null;
  const text = v1 === null ? 'no data yet' : `${v1.toFixed(1)} ${def.unit}` + (def.pair && v2 !== null ? ` / ${v2.toFixed(1)} ${def.unit}` : '');
  value.textContent = text;
  svg.setAttribute('aria-label', `${def.title}: ${text}, ${count} points over the last ${Math.round(windowSecs / 60)} minutes`);
}

// Merges new points (by time) into a column series.
function mergeSeries(into, add) {
  if (!into) return add;
  const keys = Object.keys(add).filter((k) => Array.isArray(add[k]));
  const idx = new Map(into.t.map((t, i) => [t, i]));
  add.t.forEach((t, j) => {
    const i = idx.get(t);
    if (i !== undefined) { for (const k of keys) into[k][i] = add[k][j]; }
    else { for (const k of keys) into[k].push(add[k][j]); }
  });
  const cutoff = Date.now() / 1000 - 24 * 3600;
  while (into.t.length && into.t[0] < cutoff) for (const k of keys) into[k].shift();
  return into;
}

// ---------------------------------------------------------------- cluster page

const TABS = [
  ['monitoring', 'Monitoring'], ['services', 'Services'], ['explorer', 'Explorers'],
  ['files', 'Files'], ['terminal', 'Terminal'], ['history', 'Status history'],
];

async function viewCluster(id, tab) {
  tab = TABS.some(([t]) => t === tab) ? tab : 'monitoring';
  const main = $main();
  let view;
  try { view = await api('GET', `/api/clusters/${encodeURIComponent(id)}`); } catch (e) {
    main.replaceChildren(h('p', {}, h('a', { href: '#/' }, '← Clusters')), errorBox(e));
    return;
  }
  const c = view.teamCluster;
  const statusBadge = badge(c.status, 'cluster-status');
  const daemonState = h('span', { class: 'muted', id: 'daemon-state' }, view.connected ? 'daemon online' : 'daemon offline');
  const actions = h('div', { class: 'toolbar' },
    h('button', { type: 'button', id: 'regenerate-token', onclick: () => regenerate(id) }, 'Regenerate enrollment token'),
    h('button', { type: 'button', id: 'update-cluster', onclick: () => requestUpdate(id, c.name) }, 'Update…'),
    h('button', { type: 'button', class: 'danger', id: 'delete-cluster', onclick: () => requestDelete(id, c.name) }, 'Delete…'));
  const facts = h('dl', { class: 'kv' },
    h('dt', {}, 'Cluster id'), h('dd', { class: 'mono' }, c._id),
    h('dt', {}, 'Installed version'), h('dd', { id: 'installed-version' }, c.installedVersion ?? '—'),
    h('dt', {}, 'Last heartbeat'), h('dd', { id: 'last-heartbeat' }, fmtTime(c.lastHeartbeatAt)),
    h('dt', {}, 'Install root'), h('dd', {}, view.installRoot ?? '—'),
    h('dt', {}, 'Service ports'), h('dd', {}, ['mongodb', 'redis', 'minio'].map((k) => `${k} ${c.services[k].port ?? '—'}`).join(' · ')));
  const tabButtons = TABS.map(([t, label]) => h('button', {
    type: 'button', role: 'tab', id: `tab-${t}`, 'aria-selected': String(t === tab), 'aria-controls': 'tabpanel', tabindex: t === tab ? '0' : '-1',
    onclick: () => { location.hash = `#/clusters/${encodeURIComponent(id)}/${t}`; },
  }, label));
  const tabs = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Cluster sections' }, tabButtons);
  tabs.addEventListener('keydown', (ev) => {
    const i = TABS.findIndex(([t]) => t === tab);
    const j = ev.key === 'ArrowRight' ? (i + 1) % TABS.length : ev.key === 'ArrowLeft' ? (i + TABS.length - 1) % TABS.length : -1;
    if (j >= 0) { ev.preventDefault(); location.hash = `#/clusters/${encodeURIComponent(id)}/${TABS[j][0]}`; }
  });
  const panel = h('section', { id: 'tabpanel', role: 'tabpanel', 'aria-labelledby': `tab-${tab}` });
  main.replaceChildren(
    h('p', {}, h('a', { href: '#/' }, '← Clusters')),
    h('h1', { id: 'cluster-name' }, c.name, statusBadge, daemonState),
    h('div', { class: 'card' }, facts, actions),
    tabs, panel);

  const ctx = { id, view, panel, onMetrics: null, onStatus: null, cleanup: [] };
  current.cleanup = () => ctx.cleanup.forEach((f) => f());
  const refreshView = async () => {
    try {
      const v = await api('GET', `/api/clusters/${encodeURIComponent(id)}`);
      ctx.view = v;
      setBadge(statusBadge, v.status);
      daemonState.textContent = v.connected ? 'daemon online' : 'daemon offline';
      document.getElementById('installed-version').textContent = v.teamCluster.installedVersion ?? '—';
      document.getElementById('last-heartbeat').textContent = fmtTime(v.teamCluster.lastHeartbeatAt);
      ctx.onStatus?.(v);
    } catch (e) {
      if (e.status === 404) {
        setBadge(statusBadge, 'deleting');
        statusBadge.textContent = 'deleted';
        announce('The cluster was deleted.');
        main.append(h('p', { class: 'notice', role: 'alert', id: 'cluster-deleted' }, 'This cluster has been deleted. ', h('a', { href: '#/' }, 'Back to the list')));
        closeEvents();
      }
    }
  };
  openEvents(id, {
    statuses: (list) => {
      const mine = list.find((st) => st.id === id);
      if (!mine) return;
      if (mine.deleted) { refreshView(); return; }
      if (statusBadge.dataset.status !== mine.status) announce(`Status: ${STATUS[mine.status]?.label ?? mine.status}`);
      setBadge(statusBadge, mine.status);
      daemonState.textContent = mine.connected ? 'daemon online' : 'daemon offline';
      refreshView();
    },
    metrics: (series) => ctx.onMetrics?.(series),
    resync: refreshView,
  });
  await ({ monitoring: tabMonitoring, services: tabServices, explorer: tabExplorer, files: tabFiles, terminal: tabTerminal, history: tabHistory }[tab])(ctx);
}

async function tabMonitoring(ctx) {
  const windows = [[15, '15 min'], [60, '1 hour'], [360, '6 hours'], [1440, '24 hours']];
  let minutes = 60;
  const sel = h('select', { id: 'chart-window' }, windows.map(([m, l]) => h('option', { value: m, selected: m === minutes }, l)));
  const grid = h('div', { class: 'charts', id: 'charts' });
  const charts = CHARTS.map((def) => ({ def, ...chartCard(def) }));
  grid.append(...charts.map((c) => c.card));
  const note = h('p', { class: 'muted', id: 'chart-note' });
  ctx.panel.replaceChildren(
    h('div', { class: 'toolbar' }, h('label', { for: 'chart-window' }, 'Window'), sel, note),
    grid);
  let series = null;
  const draw = () => {
    for (const c of charts) drawChart(c, c.def, series, minutes * 60);
    const n = series?.t.length ?? 0;
    note.textContent = n ? `${n} point${n === 1 ? '' : 's'}, one per ${series.stepSeconds} s` : 'No heartbeat with metrics yet.';
  };
  const load = async () => {
    try { series = await api('GET', `/api/clusters/${encodeURIComponent(ctx.id)}/metrics?minutes=${minutes}`); draw(); } catch (e) { note.replaceChildren(errorBox(e)); }
  };
  sel.addEventListener('change', () => { minutes = Number(sel.value); load(); });
  ctx.onMetrics = (add) => { if (minutes <= 60 && series && series.stepSeconds === add.stepSeconds) { series = mergeSeries(series, add); draw(); } else load(); };
  const tick = setInterval(() => series && draw(), 10000);
  ctx.cleanup.push(() => clearInterval(tick));
  await load();
}

async function command(id, name, payload = {}) {
  const r = await api('POST', `/api/clusters/${encodeURIComponent(id)}/commands`, { command: name, payload });
  if (!r.ok) throw new ApiError(r.status, 'Daemon', r.message ?? `the daemon answered ${r.status}`);
  const d = r.data;
  if (d && d.status === 'success') return d.data;
  return d;
}

function fmtNumber(v) {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'number') return v >= 1e6 ? `${(v / 1e6).toFixed(1)} M` : v >= 1e4 ? `${(v / 1e3).toFixed(1)} k` : String(Math.round(v * 100) / 100);
  return String(v);
}

async function tabServices(ctx) {
  const body = h('div', { id: 'services' }, h('p', { class: 'muted' }, 'Asking the daemon…'));
  const refresh = h('button', { type: 'button', id: 'services-refresh' }, 'Refresh');
  ctx.panel.replaceChildren(h('div', { class: 'toolbar' }, h('h2', {}, 'Service health'), refresh, h('span', { class: 'muted' }, 'refreshes every 10 s')), body);
  const tone = { healthy: 'ok', starting: 'info', degraded: 'warn', failed: 'bad', stopped: 'idle' };
  const load = async () => {
    let data;
    try { data = await command(ctx.id, 'runtime.services.status'); } catch (e) { body.replaceChildren(errorBox(e)); return; }
    const services = data?.services ?? {};
    const names = Object.keys(services);
    if (!names.length) { body.replaceChildren(h('p', { class: 'muted' }, 'This daemon runs no managed services.')); return; }
    body.replaceChildren(...names.map((n) => {
      const sv = services[n];
      const stats = sv.stats ?? {};
      const figures = n === 'redis'
        ? [['Connected clients', stats.connectedClients], ['Memory used', stats.usedMemoryBytes != null ? `${(stats.usedMemoryBytes / 1048576).toFixed(1)} MiB` : null], ['Operations/s', stats.opsPerSecond], ['Commands processed', stats.totalCommands]]
        : n === 'mongo' || n === 'mongodb'
          ? [['Connections', stats.connections], ['Available connections', stats.availableConnections], ['Queries', stats.queries], ['Inserts', stats.opcounters?.insert], ['Updates', stats.opcounters?.update], ['Version', stats.version]]
          : Object.entries(stats).map(([k, v]) => [k, typeof v === 'object' ? JSON.stringify(v) : v]);
      return h('div', { class: 'card', 'data-service': n },
        h('h2', {}, `${n} `, h('span', { class: 'badge', 'data-tone': tone[sv.state] ?? 'idle' }, sv.state ?? 'unknown')),
        h('dl', { class: 'kv' },
          h('dt', {}, 'Mode'), h('dd', {}, sv.mode ?? '—'),
          h('dt', {}, 'Probe latency'), h('dd', {}, sv.probeLatencyMs != null ? `${fmtNumber(sv.probeLatencyMs)} ms` : '—'),
          h('dt', {}, 'Uptime'), h('dd', {}, sv.uptimeSeconds != null ? `${fmtNumber(sv.uptimeSeconds)} s` : '—'),
          h('dt', {}, 'Restarts'), h('dd', {}, fmtNumber(sv.restarts)),
          h('dt', {}, 'Address'), h('dd', {}, sv.host ? `${sv.host}:${sv.port}` : '—'),
          sv.lastError ? [h('dt', {}, 'Last error'), h('dd', { class: 'error' }, sv.lastError)] : null,
          figures.map(([k, v]) => [h('dt', {}, k), h('dd', {}, fmtNumber(v))])));
    }));
  };
  refresh.addEventListener('click', load);
  const timer = setInterval(load, 10000);
  ctx.cleanup.push(() => clearInterval(timer));
  await load();
}

const EXPLORERS = [['redis-data', 'Redis'], ['mongo-documents', 'MongoDB'], ['minio', 'MinIO']];
const CONTAINER_TYPES = new Set(['bucket', 'directory', 'redis-database']);

// A browser of one explorer target. `opts.onNavigate(path)` runs when a
// directory is opened (or reloaded), `opts.onSelect(entry)` when an entry
// is shown: the file manager acts on them.
function explorer(ctx, mount, target, opts = {}) {
  const crumbs = h('nav', { class: 'crumbs', 'aria-label': 'Path' });
  const list = h('ul', { class: 'entries', id: 'explorer-entries', 'aria-label': 'Entries' });
  const node = h('div', { id: 'explorer-node' }, h('p', { class: 'muted' }, 'Choose an entry to see it.'));
  mount.replaceChildren(h('div', { class: 'split' }, h('div', {}, crumbs, list), node));
  const base = `/api/clusters/${encodeURIComponent(ctx.id)}/explorer/${target}`;
  let path = '';
  async function open(p) {
    path = p;
    node.replaceChildren(h('p', { class: 'muted' }, 'Choose an entry to see it.'));
    opts.onNavigate?.(p);
    crumbs.replaceChildren(h('button', { type: 'button', onclick: () => open('') }, 'root'),
      ...p.split('/').filter(Boolean).flatMap((seg, i, all) => [h('span', { 'aria-hidden': 'true' }, '/'),
        h('button', { type: 'button', onclick: () => open(all.slice(0, i + 1).join('/')) }, decodeURIComponent(seg))]));
    list.replaceChildren(h('li', { class: 'muted' }, 'Loading…'));
    let entries;
    try { entries = await api('GET', `${base}/entries?path=${encodeURIComponent(p)}`); } catch (e) { list.replaceChildren(h('li', {}, errorBox(e))); return; }
    if (!entries.length) { list.replaceChildren(h('li', { class: 'muted', style: 'padding:8px' }, 'Empty.')); return; }
    list.replaceChildren(...entries.map((e) => h('li', {}, h('button', {
      type: 'button', 'data-path': e.path, 'data-type': e.type,
      onclick: (ev) => { if (CONTAINER_TYPES.has(e.type)) open(e.path); else showNode(e, ev.currentTarget); },
    }, h('span', {}, e.name), h('span', { class: 'muted' }, e.description ?? e.type)))));
    opts.onOpen?.(p);
  }
  async function showNode(e, button) {
    for (const b of list.querySelectorAll('button[aria-current]')) b.removeAttribute('aria-current');
    button?.setAttribute('aria-current', 'true');
    opts.onSelect?.(e);
    node.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
    let n;
    try { n = await api('GET', `${base}/node?path=${encodeURIComponent(e.path)}`); } catch (err) { node.replaceChildren(errorBox(err)); return; }
    const download = h('a', { class: 'button', id: 'node-download', href: `${base}/download?path=${encodeURIComponent(e.path)}`, download: '' }, 'Download');
    const content = n.mongoDocuments?.length
      ? h('pre', { id: 'node-content', tabindex: '0' }, n.mongoDocuments.map((d) => JSON.stringify(d.value ?? d, null, 2)).join('\n\n'))
      : h('pre', { id: 'node-content', tabindex: '0' }, n.textContent ?? '(empty)');
    node.replaceChildren(h('h2', { id: 'node-title' }, n.title ?? e.name), h('p', { class: 'muted' }, `${n.type ?? e.type} · ${n.contentType ?? ''}`),
      h('div', { class: 'toolbar' }, download, ...(opts.nodeActions?.(e) ?? [])), content);
    announce(`Opened ${n.title ?? e.name}`);
  }
  open('');
  return { reload: () => open(path), open, path: () => path };
}

async function tabExplorer(ctx) {
  const sel = h('select', { id: 'explorer-target' }, EXPLORERS.map(([t, l]) => h('option', { value: t }, l)));
  const mount = h('div');
  ctx.panel.replaceChildren(h('div', { class: 'toolbar' }, h('label', { for: 'explorer-target' }, 'Data store'), sel), mount);
  const go = () => explorer(ctx, mount, sel.value);
  sel.addEventListener('change', go);
  go();
}

// Host files: the file manager. What is offered is what the daemon says:
// `stat` of the current location (…/explorer/host-files/stat) tells
// whether its root is writable (`readOnly`); a daemon that does not know
// `stat` (404, unknown command) offers reading only. Every change goes
// through the plane's HTTP routes (mkdir, rename, DELETE entries, and a
// streamed PUT for uploads).
const FILE_OPS = [['upload', 'Upload…'], ['mkdir', 'New folder…'], ['rename', 'Rename…'], ['delete', 'Delete…']];
const NOT_OFFERED = 'not offered by this daemon';

const pathParts = (p) => p.split('/').filter(Boolean);
const rootOf = (p) => pathParts(p)[0] ?? '';
const parentOf = (p) => pathParts(p).slice(0, -1).join('/');
const joinPath = (...parts) => parts.flatMap(pathParts).join('/');

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1048576) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1073741824) return `${(n / 1048576).toFixed(1)} MiB`;
  return `${(n / 1073741824).toFixed(2)} GiB`;
}

// A dialog asking for one line of text; resolves the trimmed text, or
// null when cancelled.
function askDialog({ title, label, value = '', help, confirmLabel }) {
  return new Promise((resolve) => {
    const input = h('input', { id: 'ask-input', value, autocomplete: 'off', spellcheck: 'false', required: true, 'aria-describedby': help ? 'ask-help' : null });
    const yes = h('button', { type: 'submit', class: 'primary', id: 'ask-yes' }, confirmLabel);
    const no = h('button', { type: 'button', id: 'ask-no' }, 'Cancel');
    const form = h('form', { method: 'dialog' },
      h('h2', { id: 'ask-title' }, title),
      h('div', { class: 'field' }, h('label', { for: 'ask-input' }, label), input),
      help ? h('p', { class: 'muted', id: 'ask-help' }, help) : null,
      h('div', { class: 'toolbar' }, yes, no));
    const dlg = h('dialog', { 'aria-labelledby': 'ask-title', id: 'ask-dialog' }, form);
    document.body.append(dlg);
    let answer = null;
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const v = input.value.trim();
      if (!v) { input.focus(); return; }
      answer = v;
      dlg.close();
    });
    no.addEventListener('click', () => dlg.close());
    dlg.addEventListener('close', () => { dlg.remove(); resolve(answer); });
    dlg.showModal();
    input.focus();
    input.select();
  });
}

async function tabFiles(ctx) {
  const base = `/api/clusters/${encodeURIComponent(ctx.id)}/explorer/host-files`;
  const query = (params) => new URLSearchParams(params).toString();
  const note = h('p', { class: 'notice', id: 'files-readonly', hidden: true });
  const status = h('span', { class: 'muted', id: 'files-status', role: 'status' });
  const progress = h('progress', { id: 'files-progress', hidden: true, 'aria-label': 'Upload in progress' });
  const selection = h('p', { class: 'muted', id: 'files-selection' });
  const errors = h('div', { id: 'files-error' });
  // The picker Upload opens; the file is sent as it is read (a streamed
  // PUT of the File), never held whole in memory.
  const picker = h('input', { type: 'file', id: 'files-upload-input', class: 'sr-only', tabindex: '-1', 'aria-hidden': 'true' });
  const buttons = Object.fromEntries(FILE_OPS.map(([op, label]) => [op, h('button', { type: 'button', 'data-op': op, disabled: true }, label)]));
  const mount = h('div');
  ctx.panel.replaceChildren(note,
    h('div', { class: 'toolbar', role: 'toolbar', 'aria-label': 'File operations' }, Object.values(buttons), picker, progress, status),
    selection, errors, mount);

  // `at`: the open directory; `selected`: the entry shown (a file, a
  // link); `offer`: what the daemon said about the open root. A disabled
  // button's title (its accessible description) says why it is disabled.
  const st = { at: '', selected: null, root: null, asked: 0, busy: false, offer: { writable: false, why: 'open a root to change files in it' } };
  // Rename and Delete act on the entry shown, else on the open folder
  // (never on a root).
  const subject = () => st.selected?.path ?? (pathParts(st.at).length > 1 ? st.at : null);

  function render() {
    const { writable, why, note: text } = st.offer;
    const target = subject();
    const set = (op, enabled, title, whyNot) => {
      const b = buttons[op];
      b.disabled = st.busy || !enabled;
      b.title = enabled ? title : whyNot;
    };
    set('upload', writable, `Upload a file into ${st.at}`, why);
    set('mkdir', writable, `Create a folder in ${st.at}`, why);
    const noTarget = 'choose a file, or open a folder, first';
    set('rename', writable && target, `Rename ${target}`, writable ? noTarget : why);
    set('delete', writable && target, `Delete ${target}`, writable ? noTarget : why);
    note.hidden = !text;
    note.textContent = text ?? '';
    selection.textContent = target ? `Selected: ${target}${st.selected ? '' : ' (the open folder)'}` : '';
  }

  // Asks the daemon what the root of `at` allows, once per root.
  async function evaluate(at) {
    const root = rootOf(at);
    if (!root) {
      st.root = null;
      st.offer = { writable: false, why: 'open a root to change files in it' };
      render();
      return;
    }
    if (root === st.root) { render(); return; }
    st.root = root;
    const asked = ++st.asked;
    st.offer = { writable: false, why: `asking the daemon about root ${root}…` };
    render();
    let offer;
    try {
      const info = await api('GET', `${base}/stat?${query({ path: at })}`);
      offer = info?.readOnly === false
        ? { writable: true }
        : {
          writable: false,
          why: `root ${root} is read-only (read_only = false in [host_files] roots)`,
          note: `Root ${root} is read-only: its files can be listed, viewed and downloaded. To change files here, set read_only = false for it in the daemon's [host_files] roots.`,
        };
    } catch (e) {
      if (e.status === 404 && e.code !== 'NOT_FOUND') {
        offer = { writable: false, why: NOT_OFFERED, note: 'This daemon offers read-only host files (list, view, download): it has no file manager.' };
      } else {
        offer = { writable: false, why: `cannot tell whether root ${root} is writable: ${e.message}` };
        st.root = null; // ask again on the next visit
      }
    }
    if (asked !== st.asked) return;
    st.offer = offer;
    render();
    if (offer.note) announce(offer.note);
  }

  const ex = explorer(ctx, mount, 'host-files', {
    onNavigate: (p) => { st.at = p; st.selected = null; evaluate(p); },
    onSelect: (e) => { st.selected = e; render(); },
  });

  // Runs one change: a busy state, the outcome announced, a failure in
  // the page's error box.
  async function change(doing, fn) {
    if (st.busy) return;
    errors.replaceChildren();
    st.busy = true;
    render();
    status.textContent = `${doing}…`;
    try {
      status.textContent = (await fn()) ?? '';
    } catch (e) {
      status.textContent = '';
      errors.replaceChildren(errorBox(e));
    } finally {
      st.busy = false;
      render();
    }
  }

  // Whether `path` exists (a 404 NOT_FOUND says no; other failures throw).
  async function exists(path) {
    try { await api('GET', `${base}/stat?${query({ path })}`); return true; } catch (e) {
      if (e.status === 404 && e.code === 'NOT_FOUND') return false;
      throw e;
    }
  }

  buttons.mkdir.addEventListener('click', async () => {
    const at = st.at;
    const name = await askDialog({ title: `New folder in ${at}`, label: 'Folder name', confirmLabel: 'Create folder' });
    if (!name) return;
    const path = joinPath(at, name);
    await change(`Creating ${path}`, async () => {
      await api('POST', `${base}/mkdir?${query({ path })}`, {});
      await ex.reload();
      return `Created the folder ${path}`;
    });
  });

  buttons.upload.addEventListener('click', () => { picker.value = ''; picker.click(); });
  picker.addEventListener('change', async () => {
    const file = picker.files?.[0];
    if (!file) return;
    const at = st.at;
    const path = joinPath(at, file.name);
    await change(`Uploading ${file.name} (${fmtBytes(file.size)}) to ${at}`, async () => {
      // Replace an existing entry only after a confirm (asked before the
      // body is sent, not after the daemon refused it with 409).
      let overwrite = false;
      if (await exists(path)) {
        overwrite = await confirmDialog({ title: `Replace ${path}?`, text: `${path} already exists. Uploading ${file.name} replaces it.`, confirmLabel: 'Replace', danger: true });
        if (!overwrite) return 'Upload cancelled';
      }
      const params = { path };
      if (overwrite) params.overwrite = 'true';
      const url = `${base}/upload?${query(params)}`;
      progress.hidden = false;
      try {
        const r = await fetch(url, {
          method: 'PUT', body: file, credentials: 'same-origin',
          headers: { accept: 'application/json', 'content-type': 'application/octet-stream' },
        });
        const done = await answer(r, url);
        await ex.reload();
        return `Uploaded ${done?.path ?? path} (${fmtBytes(done?.size ?? file.size)})`;
      } finally { progress.hidden = true; picker.value = ''; }
    });
  });

  buttons.rename.addEventListener('click', async () => {
    const from = subject();
    if (!from) return;
    const folder = !st.selected;
    const root = rootOf(from);
    const rel = pathParts(from).slice(1).join('/');
    const to = await askDialog({
      title: `Rename ${from}`, label: `New name or path in root ${root}`, value: rel, confirmLabel: 'Rename',
      help: `A path with / moves the entry elsewhere in ${root}; it cannot leave the root.`,
    });
    if (!to || joinPath(to) === rel) return;
    const dest = joinPath(root, to);
    await change(`Renaming ${from} to ${dest}`, async () => {
      try {
        await api('POST', `${base}/rename?${query({ path: from, to: dest })}`, {});
      } catch (e) {
        if (e.status !== 409 || e.code !== 'ALREADY_EXISTS') throw e;
        const yes = await confirmDialog({ title: `Replace ${dest}?`, text: `${dest} already exists. Replace it with ${from}? What is there now is lost.`, confirmLabel: 'Replace', danger: true });
        if (!yes) return 'Rename cancelled';
        await api('POST', `${base}/rename?${query({ path: from, to: dest, overwrite: 'true' })}`, {});
      }
      await (folder ? ex.open(dest) : ex.reload());
      return `Renamed ${from} to ${dest}`;
    });
  });

  buttons.delete.addEventListener('click', async () => {
    const target = subject();
    if (!target) return;
    const folder = !st.selected || st.selected.type === 'directory';
    const yes = await confirmDialog(folder
      ? { title: `Delete the folder ${target}?`, text: `The folder ${target} and everything in it are deleted from the host, recursively. This cannot be undone.`, confirmLabel: `Delete ${target} and its contents`, danger: true }
      : { title: `Delete ${target}?`, text: `${target} is deleted from the host. This cannot be undone.`, confirmLabel: `Delete ${target}`, danger: true });
    if (!yes) return;
    await change(`Deleting ${target}`, async () => {
      const params = { path: target };
      if (folder) params.recursive = 'true';
      const r = await api('DELETE', `${base}/entries?${query(params)}`, {});
      await (folder ? ex.open(parentOf(target)) : ex.reload());
      return `Deleted ${target}${r?.removed > 1 ? ` (${r.removed} entries)` : ''}`;
    });
  });
}

let xtermModules = null;
async function loadXterm() {
  if (xtermModules) return xtermModules;
  const info = await api('GET', '/api/plane/info');
  if (!info.terminal.bundled) throw new Error('This volt-plane build has no terminal: xterm.js was not embedded (run npm ci --prefix plane/console, then rebuild).');
  if (!document.querySelector('link[data-xterm]')) document.head.append(h('link', { rel: 'stylesheet', href: '/console/vendor/xterm.css', 'data-xterm': '1' }));
  const [{ Terminal }, { FitAddon }] = await Promise.all([import('/console/vendor/xterm.mjs'), import('/console/vendor/addon-fit.mjs')]);
  xtermModules = { Terminal, FitAddon };
  return xtermModules;
}

async function tabTerminal(ctx) {
  const box = h('div', { class: 'terminal-box' }, h('div', { id: 'terminal', 'aria-label': 'Host terminal' }));
  const state = h('span', { id: 'terminal-state', role: 'status' }, 'not connected');
  const connect = h('button', { type: 'button', class: 'primary', id: 'terminal-connect' }, 'Connect');
  const disconnect = h('button', { type: 'button', id: 'terminal-disconnect', disabled: true }, 'Disconnect');
  ctx.panel.replaceChildren(
    h('p', { class: 'muted' }, 'A shell on the cluster host, as the user voltd runs terminals as. Closing it ends the shell.'),
    h('div', { class: 'toolbar' }, connect, disconnect, state), box);
  let mods;
  try { mods = await loadXterm(); } catch (e) { box.replaceChildren(errorBox(e)); connect.disabled = true; return; }
  const term = new mods.Terminal({ cursorBlink: true, fontSize: 14, scrollback: 5000, screenReaderMode: true });
  const fit = new mods.FitAddon();
  term.loadAddon(fit);
  term.open(box.firstChild);
  fit.fit();
  window.voltTerminal = term; // for tests and the curious: the screen buffer
  let ws = null;
  const enc = new TextEncoder();
  const sendResize = () => { if (ws?.readyState === 1) ws.send(JSON.stringify({ type: 'resize', rows: term.rows, cols: term.cols })); };
  const ro = new ResizeObserver(() => { try { fit.fit(); } catch { /* hidden */ } });
  ro.observe(box);
  term.onResize(sendResize);
  term.onData((d) => { if (ws?.readyState === 1) ws.send(enc.encode(d)); });
  function open() {
    const proto = location.protocol === 'https:' ? 'wss' : 'ws';
    ws = new WebSocket(`${proto}://${location.host}/api/clusters/${encodeURIComponent(ctx.id)}/terminal?rows=${term.rows}&cols=${term.cols}`);
    ws.binaryType = 'arraybuffer';
    state.textContent = 'connecting…';
    connect.disabled = true; disconnect.disabled = false;
    ws.onopen = () => { state.textContent = 'connected'; term.focus(); announce('Terminal connected'); };
    ws.onmessage = (ev) => { term.write(typeof ev.data === 'string' ? ev.data : new Uint8Array(ev.data)); };
    ws.onclose = (ev) => {
      state.textContent = `closed (${ev.code}${ev.reason ? `: ${ev.reason}` : ''})`;
      connect.disabled = false; disconnect.disabled = true; ws = null;
    };
  }
  connect.addEventListener('click', open);
  disconnect.addEventListener('click', () => ws?.close(1000));
  ctx.cleanup.push(() => { ws?.close(1000); ro.disconnect(); term.dispose(); window.voltTerminal = undefined; });
  open();
}

async function tabHistory(ctx) {
  const list = h('ol', { class: 'timeline', id: 'status-history', 'aria-label': 'Status changes, newest first' });
  const log = h('ol', { class: 'timeline', id: 'cluster-log', 'aria-label': 'Plane events for this cluster, newest first' });
  ctx.panel.replaceChildren(h('h2', {}, 'Status changes'), list, h('h2', {}, 'Plane events'), log);
  const render = (v) => {
    list.replaceChildren(...[...v.statusHistory].reverse().map((e) => h('li', {}, h('time', { datetime: e.at }, fmtTime(e.at)), badge(e.status), h('span', { class: 'muted' }, e.source), e.reason ? h('span', {}, e.reason) : null)));
  };
  render(ctx.view);
  ctx.onStatus = render;
  try {
    const d = await api('GET', `/api/plane/events?cluster=${encodeURIComponent(ctx.id)}&limit=100`);
    log.replaceChildren(...d.events.reverse().map(logItem));
  } catch (e) { log.replaceChildren(h('li', {}, errorBox(e))); }
}

// A dialog asking to confirm; resolves true when confirmed.
function confirmDialog({ title, text, confirmLabel, danger, extra }) {
  return new Promise((resolve) => {
    const yes = h('button', { type: 'button', class: danger ? 'danger' : 'primary', id: 'confirm-yes' }, confirmLabel);
    const no = h('button', { type: 'button', id: 'confirm-no' }, 'Cancel');
    const dlg = h('dialog', { 'aria-labelledby': 'confirm-title', id: 'confirm-dialog' },
      h('h2', { id: 'confirm-title' }, title), h('p', {}, text), extra ?? null, h('div', { class: 'toolbar' }, yes, no));
    document.body.append(dlg);
    let answer = false;
    yes.addEventListener('click', () => { answer = true; dlg.close(); });
    no.addEventListener('click', () => dlg.close());
    dlg.addEventListener('close', () => { dlg.remove(); resolve(answer); });
    dlg.showModal();
    no.focus();
  });
}

function result(title, ...content) {
  const ok = h('button', { type: 'button', class: 'primary' }, 'OK');
  const dlg = h('dialog', { 'aria-labelledby': 'result-title', id: 'result-dialog' }, h('h2', { id: 'result-title' }, title), ...content, h('div', { class: 'toolbar' }, ok));
  document.body.append(dlg);
  ok.addEventListener('click', () => dlg.close());
  dlg.addEventListener('close', () => dlg.remove());
  dlg.showModal();
  ok.focus();
}

async function regenerate(id) {
  const yes = await confirmDialog({ title: 'Regenerate the enrollment token?', text: 'The previous token stops working. Whoever enrolls with the new one gets a new daemon password, so a daemon still using the old password is disconnected and must be re-enrolled.', confirmLabel: 'Regenerate' });
  if (!yes) return;
  try {
    const data = await api('POST', `/api/clusters/${encodeURIComponent(id)}/enrollment-token/regenerate`, {});
    showInstall(h('dialog', { id: 'install-dialog' }), data, 'New enrollment token');
  } catch (e) { result('Could not regenerate the token', errorBox(e)); }
}

async function requestUpdate(id, name) {
  const version = h('input', { id: 'update-version', required: true, maxlength: 128, placeholder: '1.2.0' });
  const yes = await confirmDialog({
    title: `Update ${name}?`, text: 'The daemon installs the target version and reconnects. The status shows updating until a heartbeat reports the new version.', confirmLabel: 'Update',
    extra: h('div', { class: 'field' }, h('label', { for: 'update-version' }, 'Target version'), version),
  });
  if (!yes || !version.value.trim()) return;
  try {
    const r = await api('POST', `/api/clusters/${encodeURIComponent(id)}/update-requests`, { targetVersion: version.value.trim() });
    const el = document.getElementById('cluster-status');
    if (el && r.teamCluster) setBadge(el, r.teamCluster.status);
    announce('Update requested');
  } catch (e) { result('Update refused', errorBox(e)); }
}

async function requestDelete(id, name) {
  const yes = await confirmDialog({ title: `Delete ${name}?`, text: 'A connected daemon uninstalls the cluster from its host (status deleting), then the record goes. Without a daemon the record goes now and you get the manual uninstall command.', confirmLabel: 'Delete cluster', danger: true });
  if (!yes) return;
  try {
    const r = await api('POST', `/api/clusters/${encodeURIComponent(id)}/delete-requests`, {});
    // Show the transition at once: the uninstall may finish before the
    // next batch of live events.
    const el = document.getElementById('cluster-status');
    if (el && r.teamCluster) setBadge(el, r.teamCluster.status);
    announce(r.deleted ? 'Cluster deleted' : 'Uninstall requested: deleting');
    if (r.deleted && r.manualUninstallCommand) result('Cluster removed', h('p', {}, r.message), copyBox('Run this on the host if the stack is still installed', r.manualUninstallCommand, 'manual-uninstall'));
  } catch (e) { result('Delete refused', errorBox(e)); }
}

// ---------------------------------------------------------------- plane log

function describe(e) {
  switch (e.type) {
    case 'status-changed': return [badge(e.from), ' → ', badge(e.to), ` (${e.source}${e.reason ? `: ${e.reason}` : ''})`];
    case 'cluster-created': return [`cluster created: ${e.name}`];
    case 'enrollment-completed': return [e.passwordRotated ? 'enrolled with a regenerated token (new daemon password)' : 'enrolled'];
    case 'update-requested': return [`update to ${e.targetVersion} requested`];
    case 'login-succeeded': return [`console login from ${e.remote}`];
    case 'login-failed': return [`failed console login from ${e.remote}`];
    case 'plane-started': return [`plane started with ${e.clusters} clusters`];
    default: return [e.type.replaceAll('-', ' ')];
  }
}

function logItem(e) {
  return h('li', { 'data-seq': e.seq },
    h('time', { datetime: e.at }, fmtTime(e.at)),
    e.clusterId ? h('a', { href: `#/clusters/${encodeURIComponent(e.clusterId)}`, class: 'mono' }, e.clusterId.slice(-8)) : h('span', { class: 'muted' }, 'plane'),
    ...describe(e));
}

async function viewLog() {
  const list = h('ol', { class: 'timeline', id: 'plane-log', 'aria-label': 'Plane events, newest first', style: 'max-height:none' });
  const paused = h('input', { type: 'checkbox', id: 'log-pause' });
  $main().replaceChildren(h('h1', {}, 'Plane log'),
    h('p', { class: 'muted' }, 'What volt-plane itself did: clusters created and deleted, enrollments, daemons registering, status changes, logins. Newest first; the last 2,000 are kept.'),
    h('div', { class: 'toolbar' }, paused, h('label', { for: 'log-pause', style: 'display:inline' }, 'Pause live updates')), list);
  const load = async () => {
    try { const d = await api('GET', '/api/plane/events?limit=500'); list.replaceChildren(...d.events.reverse().map(logItem)); } catch (e) { list.replaceChildren(h('li', {}, errorBox(e))); }
  };
  openEvents(null, {
    log: (d) => {
      if (paused.checked) return;
      for (const e of d.events) list.prepend(logItem(e));
      while (list.children.length > 1000) list.lastChild.remove();
    },
    resync: load,
  });
  await load();
}

// ---------------------------------------------------------------- router

const current = { cleanup: null };

async function route() {
  current.cleanup?.();
  current.cleanup = null;
  if (!loggedIn) {
    let s;
    try { s = await api('GET', '/api/auth/session'); } catch { s = { authenticated: false }; }
    if (!s.authenticated) { showLogin(); return; }
    loggedIn = true;
    document.getElementById('logout').hidden = false;
  }
  const hash = location.hash.replace(/^#/, '') || '/';
  const parts = hash.split('/').filter(Boolean).map(decodeURIComponent);
  for (const a of document.querySelectorAll('[data-nav]')) a.removeAttribute('aria-current');
  if (parts[0] === 'clusters' && parts[1]) {
    document.querySelector('[data-nav="clusters"]').setAttribute('aria-current', 'page');
    document.title = 'Cluster · volt-plane';
    await viewCluster(parts[1], parts[2]);
  } else if (parts[0] === 'log') {
    document.querySelector('[data-nav="log"]').setAttribute('aria-current', 'page');
    document.title = 'Plane log · volt-plane';
    await viewLog();
  } else {
    document.querySelector('[data-nav="clusters"]').setAttribute('aria-current', 'page');
    document.title = 'Clusters · volt-plane';
    await viewList();
  }
  document.body.dataset.ready = hash;
}

window.addEventListener('hashchange', () => { route(); $main().focus({ preventScroll: true }); });
document.getElementById('logout').addEventListener('click', logout);
route();
