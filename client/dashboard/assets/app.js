// The breakerbox dashboard page: plain DOM, no framework, no build step.
// Data comes from api/events (server-sent events: a snapshot, then "tick"
// every interval with the rates and the rows that changed, and "update" at
// once when a breaker announces a transition). Every URL is relative, so
// the page works wherever the dashboard is mounted.
'use strict';

const PAGE_SIZE = 100;
const SPARK_LEN = 30;

const S = {
  rows: new Map(),   // name -> row (JSON of Breaker), with _at: Date.now() when received
  sparks: new Map(), // name -> [[requests/s, refused/s], ...], oldest first
  session: {},       // api/session: user, csrf, operators, closed, read
  sort: { key: 'state', dir: 1 },
  filter: '', stateFilter: '', page: 0,
  error: '', es: null, detail: null, detailMsg: null,
};

// ---- small helpers ----

const $ = (sel) => document.querySelector(sel);

// h builds an element: h('td', {class: 'num'}, 'text', child, ...).
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat()) if (kid != null) el.append(kid instanceof Node ? kid : String(kid));
  return el;
}

function human(ms) {
  if (ms == null || !isFinite(ms)) return '';
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return s + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm ' + (s % 60) + 's';
  if (s < 86400) return Math.floor(s / 3600) + 'h ' + Math.floor(s % 3600 / 60) + 'm';
  return Math.floor(s / 86400) + 'd ' + Math.floor(s % 86400 / 3600) + 'h';
}
const rate = (x) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const when = (ms) => (ms ? new Date(ms).toISOString().replace('T', ' ').slice(0, 19) + 'Z' : '-');

// Redis's clock now, as the row was read plus the time since it arrived.
const redisNow = (r) => r.time_ms + (Date.now() - r._at);

function look(r) { // the state's colour class and label
  if (r.error) return ['error', 'unreadable'];
  if (r.mode === 'forced_open') return ['forced_open', 'forced open'];
  if (r.mode === 'disabled') return ['disabled', 'disabled'];
  return [r.state, r.state.replace('_', '-')];
}
const ORDER = { open: 0, forced_open: 1, half_open: 2, error: 3, disabled: 4, closed: 5 };

function inState(r) { return r.since_ms ? human(redisNow(r) - r.since_ms) : r.error ? '' : '–'; }
function retryIn(r) {
  if (r.state !== 'open') return '';
  if (r.retry_after_ms < 0) return 'until released';
  const left = r.retry_after_ms - (Date.now() - r._at);
  return left > 0 ? human(left + 999) : 'probe due';
}

const SVG = 'http://www.w3.org/2000/svg';
function spark(data, w = 64, hgt = 16) {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('class', 'spark');
  svg.setAttribute('width', w);
  svg.setAttribute('height', hgt);
  svg.setAttribute('aria-hidden', 'true');
  if (!data || data.length < 2) return svg;
  const top = Math.max(...data.map((d) => Math.max(d[0], d[1])), 1e-9);
  const step = (w - 2) / (SPARK_LEN - 1);
  for (const [i, cls] of [[0, 'req'], [1, 'ref']]) {
    if (i === 1 && !data.some((d) => d[1] > 0)) continue; // no refusals: the request line alone
    const pts = data.map((d, j) => {
      const x = w - 1 - (data.length - 1 - j) * step;
      return x.toFixed(1) + ',' + (hgt - 1 - (d[i] / top) * (hgt - 2)).toFixed(1);
    });
    const line = document.createElementNS(SVG, 'polyline');
    line.setAttribute('class', cls);
    line.setAttribute('points', pts.join(' '));
    svg.append(line);
  }
  return svg;
}

// ---- the server ----

async function call(method, path, body) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (S.session.csrf) headers['X-CSRF-Token'] = S.session.csrf;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin' });
  let data = {};
  try { data = await res.json(); } catch (e) { /* not JSON */ }
  if (!res.ok) throw Object.assign(new Error(data.error || res.statusText), { status: res.status });
  return data;
}

function connect() {
  if (S.es) S.es.close();
  const es = new EventSource('api/events');
  S.es = es;
  es.onopen = () => setLive(true);
  es.onerror = () => {
    setLive(false);
    if (es.readyState === EventSource.CLOSED) setTimeout(() => { if (S.es === es) start(); }, 5000);
  };
  es.addEventListener('snapshot', (e) => {
    const s = JSON.parse(e.data);
    S.rows.clear();
    S.sparks = new Map(Object.entries(s.sparks || {}));
    for (const r of s.rows) put(r);
    S.error = s.error || '';
    render();
  });
  es.addEventListener('tick', (e) => {
    const t = JSON.parse(e.data);
    S.error = t.error || '';
    if (!t.error) {
      for (const [name, sp] of S.sparks) if (!S.rows.has(name)) S.sparks.delete(name);
      for (const name of S.rows.keys()) {
        const [req, ref] = (t.rates && t.rates[name]) || [0, 0];
        const sp = S.sparks.get(name) || [];
        sp.push([req, ref]);
        if (sp.length > SPARK_LEN) sp.shift();
        S.sparks.set(name, sp);
        const r = S.rows.get(name);
        r.request_rate = req; r.refusal_rate = ref;
      }
    }
    for (const r of t.rows) put(r);
    for (const name of t.removed || []) { S.rows.delete(name); S.sparks.delete(name); }
    render();
  });
  es.addEventListener('update', (e) => {
    const u = JSON.parse(e.data);
    for (const r of u.rows) put(r, true);
    render();
    if (S.detail && u.rows.some((r) => r.name === S.detail)) loadDetail();
  });
}

function put(r, flash) {
  r._at = Date.now();
  const old = S.rows.get(r.name);
  r._flash = flash || (old && old.generation !== r.generation);
  S.rows.set(r.name, r);
}

function setLive(on) {
  const el = $('#live');
  el.classList.toggle('on', on);
  el.textContent = on ? 'live' : 'reconnecting…';
}

// ---- the list ----

const COLUMNS = [
  { key: 'state', label: 'State', sort: (r) => ORDER[look(r)[0]],
    cell: (r) => { const [cls, label] = look(r); return h('td', { class: 'state' }, h('span', { class: 'pill s-' + cls }, label)); } },
  { key: 'name', label: 'Breaker', sort: (r) => r.name,
    cell: (r) => h('td', { class: 'name' }, h('a', { href: '#/b/' + encodeURIComponent(r.name) }, r.name)) },
  { key: 'failures', label: 'Failures', sort: (r) => r.failures / (r.failure_threshold || 1),
    cell: (r) => h('td', { class: 'num failures' }, r.error ? '' : r.failures + '/' + r.failure_threshold) },
  { key: 'success', label: 'Success', sort: (r) => r.success_rate,
    cell: (r) => h('td', { class: 'num' }, r.error ? '' : r.success_rate.toFixed(1) + '%') },
  // Issue 11's trip policies: shown when some breaker reports them.
  { key: 'failure_rate', label: 'Failure rate', optional: true, sort: (r) => r.failure_rate ?? -1,
    cell: (r) => h('td', { class: 'num' }, r.failure_rate == null ? '' : r.failure_rate.toFixed(1) + '%') },
  { key: 'slow_call_rate', label: 'Slow calls', optional: true, sort: (r) => r.slow_call_rate ?? -1,
    cell: (r) => h('td', { class: 'num' }, r.slow_call_rate == null ? '' : r.slow_call_rate.toFixed(1) + '%') },
  { key: 'rps', label: 'Requests/s', sort: (r) => r.request_rate,
    cell: (r) => h('td', { class: 'num' }, rate(r.request_rate), spark(S.sparks.get(r.name))) },
  { key: 'refused', label: 'Refused/s', sort: (r) => r.refusal_rate,
    cell: (r) => h('td', { class: 'num' }, rate(r.refusal_rate)) },
  { key: 'since', label: 'In state', sort: (r) => -(r.since_ms || 0),
    cell: (r) => h('td', { class: 'num since' }, inState(r)) },
  { key: 'retry', label: 'Retry in', sort: (r) => (r.state === 'open' ? (r.retry_after_ms < 0 ? Infinity : r.retry_after_ms) : -1),
    cell: (r) => h('td', { class: 'num retry' }, retryIn(r)) },
  { key: 'error', label: 'Last error', sort: (r) => r.error || r.last_error,
    cell: (r) => h('td', { class: 'err', title: r.error || r.last_error }, r.error || r.last_error) },
];

function visibleColumns() {
  const rows = [...S.rows.values()];
  return COLUMNS.filter((c) => !c.optional || rows.some((r) => r[c.key] != null));
}

function matches(r) {
  const f = S.filter;
  if (f && !r.name.toLowerCase().includes(f) && !(r.last_error || '').toLowerCase().includes(f)) return false;
  const cls = look(r)[0];
  switch (S.stateFilter) {
    case '': return true;
    case 'override': return cls === 'forced_open' || cls === 'disabled';
    case 'open': return cls === 'open' || cls === 'forced_open';
    default: return cls === S.stateFilter;
  }
}

function renderList() {
  const cols = visibleColumns();
  const col = cols.find((c) => c.key === S.sort.key) || cols[0];
  const rows = [...S.rows.values()].filter(matches).sort((a, b) => {
    const x = col.sort(a), y = col.sort(b);
    return (x < y ? -1 : x > y ? 1 : a.name < b.name ? -1 : 1) * (x === y ? 1 : S.sort.dir);
  });
  const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
  S.page = Math.min(S.page, pages - 1);
  const shown = rows.slice(S.page * PAGE_SIZE, (S.page + 1) * PAGE_SIZE);

  const head = cols.map((c) => c.key).join() + ' ' + col.key + ' ' + S.sort.dir;
  if (head !== S.head) { // rebuilt only when it changes, so that a click is never lost to a redraw
    S.head = head;
    $('#breakers thead tr').replaceChildren(...cols.map((c) => h('th', {
      'data-sort': c.key, class: c.key === col.key ? 'sorted' + (S.sort.dir < 0 ? ' desc' : '') : null,
      onclick: () => { S.sort = { key: c.key, dir: S.sort.key === c.key ? -S.sort.dir : 1 }; render(); },
    }, c.label)));
  }
  $('#breakers tbody').replaceChildren(...shown.map((r) => {
    const tr = h('tr', { 'data-name': r.name, 'data-state': look(r)[0], class: r._flash ? 'flash' : null }, cols.map((c) => c.cell(r)));
    r._flash = false;
    return tr;
  }));
  $('#pageinfo').textContent = rows.length === S.rows.size
    ? `${S.page * PAGE_SIZE + (shown.length ? 1 : 0)}–${S.page * PAGE_SIZE + shown.length} of ${rows.length}`
    : `${S.page * PAGE_SIZE + (shown.length ? 1 : 0)}–${S.page * PAGE_SIZE + shown.length} of ${rows.length} (${S.rows.size} in all)`;
  $('#prev').disabled = S.page === 0;
  $('#next').disabled = S.page >= pages - 1;
}

// Each second, the clock-driven cells of the rows shown.
function tickClocks() {
  for (const tr of document.querySelectorAll('#breakers tbody tr')) {
    const r = S.rows.get(tr.dataset.name);
    if (!r) continue;
    const since = tr.querySelector('.since'), retry = tr.querySelector('.retry');
    if (since) since.textContent = inState(r);
    if (retry) retry.textContent = retryIn(r);
  }
  if (S.detail) renderDetailFigures();
}

function renderSummary() {
  const n = { open: 0, half_open: 0, override: 0 };
  for (const r of S.rows.values()) {
    const cls = look(r)[0];
    if (cls === 'open' || cls === 'forced_open') n.open++;
    if (cls === 'half_open') n.half_open++;
    if (cls === 'forced_open' || cls === 'disabled') n.override++;
  }
  $('#summary').textContent = `${S.rows.size} breakers · ${n.open} open · ${n.half_open} half-open · ${n.override} overridden`;
}

// ---- a breaker's page ----

async function loadDetail() {
  const name = S.detail;
  try {
    const d = await call('GET', 'api/breaker?name=' + encodeURIComponent(name));
    if (S.detail === name) { S.detailData = d; renderDetail(); }
  } catch (e) {
    if (S.detail === name) { S.detailData = null; $('#detail').replaceChildren(h('p', { class: 'msg bad' }, e.message), h('a', { href: '#/' }, '← every breaker')); }
  }
}

function figure(label, value, extra) { return h('div', { class: 'figure' }, h('span', {}, label), h('b', { title: String(value) }, value), extra); }

function renderDetailFigures() {
  const box = $('#figures');
  const r = S.rows.get(S.detail);
  if (!box || !r) return;
  const [cls, label] = look(r);
  $('#detail-state').className = 'pill s-' + cls;
  $('#detail-state').textContent = label;
  box.replaceChildren(...[
    figure('failures / threshold', r.failures + ' / ' + r.failure_threshold),
    figure('success rate', r.success_rate.toFixed(1) + '%'),
    figure('requests (successes, failures, refused)', `${r.requests} (${r.successes}, ${r.failures_total}, ${r.refused})`),
    figure('requests/s · refused/s', rate(r.request_rate) + ' · ' + rate(r.refusal_rate), spark(S.sparks.get(r.name), 180, 30)),
    figure('in state', inState(r) || 'unknown'),
    figure('retry in', retryIn(r) || '-'),
    figure('opened at', when(r.opened_at_ms)),
    figure('probes held (successes)', r.state === 'half_open' ? `${r.probes} (${r.half_open_successes})` : '-'),
    r.failure_rate != null ? figure('window (trip rules)', `${r.calls_in_window} calls · ${r.failure_rate.toFixed(1)}% failed · ${r.slow_call_rate.toFixed(1)}% slow`) : null,
    r.config && r.recovery_timeout_in_force_ms !== r.config.recovery_timeout_ms ? figure('recovery timeout in force', human(r.recovery_timeout_in_force_ms)) : null,
    r.retry_until_ms ? figure("upstream's retry-after until", when(r.retry_until_ms)) : null,
    figure('generation', r.generation),
    figure('last error', r.last_error || '-'),
  ].filter(Boolean));
}

// The config fields in the order an operator thinks of them; fields the
// page does not know (newer scripts) come last.
const CONFIG_ORDER = ['failure_threshold', 'recovery_timeout_ms', 'success_threshold', 'half_open_max_calls', 'request_timeout_ms',
  'window_ms', 'window_calls', 'window_buckets', 'failure_rate_threshold', 'minimum_calls', 'slow_call_ms',
  'slow_call_rate_threshold', 'max_retry_after_ms', 'recovery_backoff', 'max_recovery_timeout_ms'];
const configRank = (f) => (CONFIG_ORDER.includes(f) ? CONFIG_ORDER.indexOf(f) : CONFIG_ORDER.length);

const ACTIONS = [
  ['reset', 'Reset', 'to closed, failures cleared, overrides lifted'],
  ['force_open', 'Force open', 'refuse every call until released'],
  ['disable', 'Disable', 'admit every call, never open, until released'],
  ['release', 'Release', 'end force open (to half-open) or disable (to closed)'],
];

function renderDetail() {
  const d = S.detailData, r = S.rows.get(S.detail) || d.breaker;
  const op = S.session.operators;
  const msg = S.detailMsg || h('span', { class: 'msg', id: 'action-msg' },
    !op ? 'read-only: no operators are configured' : S.session.user ? '' : 'sign in as an operator to act');
  S.detailMsg = msg;
  const cfg = Object.entries(r.config || {}).sort(([a], [b]) => configRank(a) - configRank(b) || (a < b ? -1 : 1));
  $('#detail').replaceChildren(...[
    h('a', { href: '#/' }, '← every breaker'),
    h('div', { class: 'detail-head' }, h('h1', {}, r.name), h('span', { id: 'detail-state', class: 'pill' }),
      op ? h('div', { class: 'actions' }, ACTIONS.map(([a, label, title]) =>
        h('button', { 'data-action': a, title, onclick: () => act('api/action', { name: r.name, action: a }, label) }, label))) : null,
      msg),
    r.error ? h('p', { class: 'msg bad' }, 'cannot read this breaker: ' + r.error) : null,
    h('div', { class: 'figures', id: 'figures' }),
    h('section', {}, h('h2', {}, 'Config'), configForm(r, cfg, op)),
    h('section', {}, h('h2', {}, 'Probes'), d.probes.length
      ? h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'lease'), h('th', {}, 'expires'))),
        h('tbody', {}, d.probes.map((p) => h('tr', {}, h('td', {}, p.lease), h('td', {}, when(p.expires_ms))))))
      : h('p', { class: 'muted' }, r.state === 'half_open' ? 'no probe in flight' : 'none: probes run only while half-open')),
    h('section', {}, h('h2', {}, 'Alert delivery'), h('p', { class: 'muted' }, `${d.stream.length} transition(s) in the stream`),
      d.stream.groups.length
        ? h('table', {}, h('thead', {}, h('tr', {}, ['group', 'consumers', 'pending', 'lag', 'last delivered'].map((x) => h('th', {}, x)))),
          h('tbody', {}, d.stream.groups.map((g) => h('tr', {}, h('td', {}, g.name), h('td', { class: 'num' }, g.consumers),
            h('td', { class: 'num' }, g.pending), h('td', { class: 'num' }, g.lag < 0 ? 'unknown' : g.lag), h('td', {}, g.last_delivered)))))
        : h('p', { class: 'muted' }, 'no alert daemon reads this breaker yet')),
    h('section', {}, h('h2', {}, 'History'), d.history.length
      ? h('ol', { class: 'timeline' }, d.history.map((e) => h('li', { class: 't-' + (e.to || 'none') },
        h('time', {}, when(e.ts)), h('span', { class: 'ev' }, e.event),
        e.from !== e.to ? `${e.from} → ${e.to}` : '', h('span', { class: 'extra' },
          ['gen ' + e.generation, e.actor && 'by ' + e.actor, e.error && 'error: ' + e.error, e.detail].filter(Boolean).join(' · ')))))
      : h('p', { class: 'muted' }, 'no transitions yet')),
  ].filter(Boolean));
  renderDetailFigures();
}

// configForm keeps the form an operator is editing across the redraws
// that updates of the breaker cause.
function configForm(r, cfg, op) {
  if (S.configDirty && S.configForm) return S.configForm;
  S.configForm = h('form', { class: 'config', oninput: () => { S.configDirty = true; },
    onsubmit: (e) => { e.preventDefault(); saveConfig(e.target, r); } },
  h('table', {}, h('tbody', {}, cfg.map(([k, v]) => h('tr', {}, h('td', {}, k),
    h('td', {}, op ? h('input', { name: k, type: 'number', min: 0, step: 1, value: v }) : String(v)),
    h('td', { class: 'muted' }, k.endsWith('_ms') ? human(v) : ''))))),
  op ? h('p', {}, h('button', { type: 'submit' }, 'Change config')) : null);
  return S.configForm;
}

async function act(path, body, label) {
  const msg = $('#action-msg');
  msg.className = 'msg';
  msg.textContent = label + '…';
  try {
    const res = await call('POST', path, body);
    msg.textContent = label + ': done by ' + res.actor;
    return true;
  } catch (e) {
    msg.className = 'msg bad';
    msg.textContent = label + ' refused: ' + e.message;
    if (e.status === 401) $('#signin input').focus();
    return false;
  }
}

// saveConfig sends only the fields edited, so that a change another
// operator made meanwhile to the others is kept.
function saveConfig(form, r) {
  const fields = {};
  for (const input of form.querySelectorAll('input')) {
    if (input.value !== input.defaultValue) fields[input.name] = Number(input.value);
  }
  if (!Object.keys(fields).length) { $('#action-msg').textContent = 'config unchanged: no field edited'; return; }
  act('api/config', { name: r.name, fields }, 'Change config').then((ok) => {
    if (ok) { S.configDirty = false; loadDetail(); }
  });
}

// ---- routing and the whole page ----

let frame = 0;
function render() {
  if (frame) return;
  frame = requestAnimationFrame(() => {
    frame = 0;
    const banner = $('#banner');
    banner.hidden = !S.error;
    banner.textContent = S.error;
    renderSummary();
    if (!S.session.read) return;
    if (S.detail) {
      if (S.detailData) renderDetailFigures();
    } else renderList();
  });
}

function route() {
  const m = location.hash.match(/^#\/b\/(.+)$/);
  S.detail = m ? decodeURIComponent(m[1]) : null;
  S.detailData = null;
  S.detailMsg = null;
  S.configDirty = false;
  $('#closed').hidden = S.session.read;
  $('#list').hidden = !S.session.read || !!S.detail;
  $('#detail').hidden = !S.session.read || !S.detail;
  if (S.detail && S.session.read) { $('#detail').replaceChildren(h('p', { class: 'muted' }, 'loading…')); loadDetail(); }
  render();
}

function renderWho() {
  const s = S.session;
  $('#who').textContent = s.user ? 'operator: ' + s.user : s.operators ? '' : 'read-only';
  $('#signin').hidden = !s.operators || !!s.user;
  $('#signout').hidden = !s.user;
}

async function start() {
  try { S.session = await call('GET', 'api/session'); } catch (e) { S.error = 'cannot reach the dashboard: ' + e.message; render(); return; }
  renderWho();
  route();
  if (S.session.read) connect();
}

function init() {
  $('#filter').addEventListener('input', (e) => { S.filter = e.target.value.trim().toLowerCase(); S.page = 0; render(); });
  $('#statefilter').addEventListener('change', (e) => { S.stateFilter = e.target.value; S.page = 0; render(); });
  $('#prev').addEventListener('click', () => { S.page--; render(); });
  $('#next').addEventListener('click', () => { S.page++; render(); });
  $('#signin').addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = e.target;
    try {
      S.session = await call('POST', 'api/login', { user: f.user.value, secret: f.secret.value });
      f.secret.value = '';
      start();
    } catch (err) {
      S.error = 'sign-in refused: ' + err.message;
      render();
    }
  });
  $('#signout').addEventListener('click', async () => { await call('POST', 'api/logout', {}); S.session = {}; if (S.es) S.es.close(); start(); });
  window.addEventListener('hashchange', route);
  setInterval(tickClocks, 1000);
  setInterval(() => { if (S.detail && S.detailData) loadDetail(); }, 5000);
  start();
}

init();
