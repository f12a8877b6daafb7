// The switchyard policy playground: the engine's web build (pkg/, made by serve.sh) checks the
// policy as you type, evaluates one request, and simulates a population of them.
import init, { check, evaluate, simulate } from './pkg/switchyard_js.js';

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const c of children) node.append(c);
  return node;
};
const SVG = 'http://www.w3.org/2000/svg';
const svg = (tag, attrs = {}, text) => {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
};

const status = $('status');
const policyBox = $('policy');
let valid = false;

function setStatus(state, text) {
  status.dataset.state = state;
  status.textContent = text;
}

/** Checks the policy text and shows the summary or every error with its place. */
function runCheck() {
  const text = policyBox.value;
  const errors = $('errors');
  const summary = $('summary');
  errors.replaceChildren();
  if (!text.trim()) {
    valid = false;
    policyBox.className = '';
    summary.className = 'muted';
    summary.textContent = 'No policy yet.';
    updateButtons();
    return;
  }
  const result = check(text);
  valid = result.ok;
  policyBox.className = valid ? 'valid' : 'invalid';
  if (valid) {
    summary.className = 'ok';
    summary.textContent = result.summary.text;
  } else {
    summary.className = '';
    summary.textContent = `${result.errors.length} error(s); the policy would be refused:`;
    for (const e of result.errors) {
      errors.append(el('li', {}, el('code', { textContent: e.place || '(document)' }), ` ${e.message}`));
    }
  }
  updateButtons();
}

function updateButtons() {
  $('evaluate').disabled = !valid;
  $('simulate').disabled = !valid;
}

/** The request as a `switchyard eval` input line. */
function requestLine() {
  const headers = {};
  for (const line of $('headers').value.split('\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim();
    if (name && !(name in headers)) headers[name] = line.slice(colon + 1).trim();
  }
  const req = { method: $('method').value, path: $('path').value, host: $('host').value };
  if ($('source-ip').value.trim()) req.source_ip = $('source-ip').value.trim();
  req.headers = headers;
  return req;
}

function runEvaluate() {
  const req = requestLine();
  $('request-line').textContent = JSON.stringify(req);
  const route = $('route');
  const table = $('decisions');
  const body = table.querySelector('tbody');
  body.replaceChildren();
  let line;
  try {
    line = evaluate(policyBox.value, req);
  } catch (e) {
    route.className = 'rejected';
    route.textContent = String(e.message || e);
    table.hidden = true;
    return;
  }
  if (line.reject) {
    route.className = 'rejected';
    route.textContent = `Rejected with ${line.reject.status} (consent): answered locally, never sent upstream.`;
  } else if (line.cluster) {
    route.className = 'routed';
    route.textContent = `Routed to cluster ${line.cluster}.`;
  } else {
    route.className = 'muted';
    route.textContent = line.decisions.length
      ? 'No decision names a cluster: the request goes where the Envoy route sends it.'
      : 'No flag is in scope: the request passes through untouched.';
  }
  for (const d of line.decisions) {
    const attrs = Object.entries(d.attributes || {}).map(([k, v]) => `${k}=${v}`).join('  ');
    const reason = el('span', { className: `reason ${d.reason}`, textContent: d.reason + (d.error ? ` ${d.error}` : '') });
    body.append(el('tr', { className: 'decision' },
      el('td', { className: 'flag', textContent: d.flag }),
      el('td', { className: 'variation', textContent: d.variation ?? '—' }),
      el('td', { className: 'cluster', textContent: d.cluster ?? '—' }),
      el('td', { className: 'reason-cell' }, reason),
      el('td', { className: 'rule', textContent: d.rule === null ? '—' : String(d.rule) }),
      el('td', { className: 'bucket', textContent: d.bucket === null ? '—' : String(d.bucket) }),
    ));
    if (attrs) {
      body.append(el('tr', { className: 'attributes' },
        el('td', { className: 'attrs', colSpan: 6, textContent: `attributes: ${attrs}` })));
    }
  }
  table.hidden = line.decisions.length === 0;
}

const COLORS = {
  TARGETING_MATCH: '#32a46a', SPLIT: '#2e90fa', DEFAULT: '#98a2b3',
  DISABLED: '#667085', CONSENT_DENIED: '#f04438', ERROR: '#dc6803',
};

/** One horizontal bar chart per flag: rule → variation (reason), width by share of its scope. */
function runSimulate() {
  const units = Number($('units').value) || 10000;
  const seed = Number($('seed').value) || 0;
  const chart = $('chart');
  chart.replaceChildren();
  let report;
  try {
    report = simulate(policyBox.value, units, seed);
  } catch (e) {
    $('sim-summary').textContent = String(e.message || e);
    return;
  }
  const routes = report.routes.map((r) => `${r.cluster} ${r.percent.toFixed(1)}%`).join(', ');
  $('sim-summary').className = '';
  $('sim-summary').textContent =
    `${report.requests} synthetic requests (seed ${report.seed}): ` +
    `${report.rejected} rejected on consent, ${report.untouched} untouched. Routes: ${routes || 'none'}.`;
  const labelOf = (r) => `${r.rule_label} → ${r.variation ?? 'reject'} (${r.reason})`;
  const longest = Math.max(0, ...report.flags.flatMap((f) => f.rows.map((r) => labelOf(r).length)));
  const labelWidth = Math.max(120, Math.ceil(longest * 6.6) + 12);
  const barWidth = 260;
  const rowHeight = 22;
  for (const f of report.flags) {
    chart.append(el('h3', { textContent: `${f.flag} — in scope for ${f.in_scope} of ${report.requests}` }));
    const height = Math.max(1, f.rows.length) * rowHeight + 4;
    const root = svg('svg', {
      width: labelWidth + barWidth + 140, height, viewBox: `0 0 ${labelWidth + barWidth + 140} ${height}`, role: 'img',
      'aria-label': `distribution of ${f.flag}`, 'data-flag': f.flag,
    });
    f.rows.forEach((r, i) => {
      const y = i * rowHeight + 2;
      const label = labelOf(r);
      root.append(svg('text', { x: labelWidth - 8, y: y + 15, 'text-anchor': 'end' }, label));
      root.append(svg('rect', {
        x: labelWidth, y: y + 3, height: rowHeight - 6, rx: 2,
        width: Math.max(1, (r.percent / 100) * barWidth),
        fill: COLORS[r.reason] || '#98a2b3', 'data-reason': r.reason,
      }));
      root.append(svg('text', { x: labelWidth + barWidth + 8, y: y + 15 }, `${r.percent.toFixed(2)}% (${r.count})`));
    });
    chart.append(root);
  }
}

let timer = 0;
policyBox.addEventListener('input', () => {
  clearTimeout(timer);
  timer = setTimeout(runCheck, 120);
});
$('request-form').addEventListener('submit', (e) => { e.preventDefault(); if (valid) runEvaluate(); });
$('simulate-form').addEventListener('submit', (e) => { e.preventDefault(); if (valid) runSimulate(); });
$('load-example').addEventListener('click', async () => {
  const res = await fetch('./pkg/example-policy.json');
  policyBox.value = await res.text();
  runCheck();
});

try {
  await init();
  setStatus('ready', 'engine ready');
  updateButtons();
  if (policyBox.value.trim()) runCheck();
} catch (e) {
  setStatus('failed', `the engine did not load: ${e.message || e}`);
}
