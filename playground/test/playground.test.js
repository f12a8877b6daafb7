// The playground in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core):
// paste the example policy, see it checked, break it and see the error's place, evaluate
// requests and compare with the golden cases, simulate, and save a screenshot to
// artifacts/playground.png. Needs `playground/serve.sh --build-only` first (js/test.sh runs it).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { chromium } = require('playwright-core');

const here = path.resolve(__dirname, '..');
const root = path.resolve(here, '..');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const example = fs.readFileSync(path.join(root, 'examples', 'support-copilot', 'policy.json'), 'utf8');
const golden = JSON.parse(fs.readFileSync(path.join(root, 'testdata', 'golden.json'), 'utf8'));

/** python3 -m http.server on an ephemeral loopback port; resolves with the base URL. */
function serve() {
  return new Promise((resolve, reject) => {
    const server = spawn('python3', ['-u', '-m', 'http.server', '0', '--bind', '127.0.0.1', '--directory', here], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const timer = setTimeout(() => reject(new Error(`http.server did not start: ${out}`)), 15000);
    server.stdout.on('data', (chunk) => {
      out += chunk;
      const m = out.match(/port (\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve({ server, url: `http://127.0.0.1:${m[1]}/` });
      }
    });
    server.stderr.on('data', () => {});
    server.on('exit', (code) => reject(new Error(`http.server exited with ${code}: ${out}`)));
  });
}

let server;
let context;
let page;
let userDataDir;
const pageErrors = [];

test.before(async () => {
  assert.ok(fs.existsSync(path.join(here, 'pkg', 'switchyard_js_bg.wasm')), 'run playground/serve.sh --build-only first');
  assert.ok(fs.existsSync(chromiumPath), `${chromiumPath} is missing (apt-get install chromium)`);
  const s = await serve();
  server = s.server;
  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: chromiumPath,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    viewport: { width: 1400, height: 1000 },
  });
  page = context.pages()[0] || (await context.newPage());
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });
  await page.goto(s.url);
  await page.waitForSelector('#status[data-state="ready"]', { timeout: 20000 });
});

test.after(async () => {
  if (context) await context.close();
  if (server) server.kill();
  if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
});

async function setPolicy(text) {
  await page.fill('#policy', text);
}

async function setRequest({ method = 'POST', path: p = '/', host = '', source_ip = '', headers = {} }) {
  await page.selectOption('#method', method);
  await page.fill('#path', p);
  await page.fill('#host', host);
  await page.fill('#source-ip', source_ip);
  await page.fill('#headers', Object.entries(headers).map(([k, v]) => `${k}: ${v}`).join('\n'));
  await page.click('#evaluate');
}

async function decisions() {
  return page.$$eval('#decisions tbody tr.decision', (rows) => rows.map((r) => ({
    flag: r.querySelector('.flag').textContent,
    variation: r.querySelector('.variation').textContent,
    reason: r.querySelector('.reason').textContent,
    rule: r.querySelector('.rule').textContent,
    bucket: r.querySelector('.bucket').textContent,
  })));
}

test('the pasted example policy is checked and summarised', async () => {
  await setPolicy(example);
  await page.waitForSelector('#summary.ok');
  assert.match(await page.textContent('#summary'), /^ok: policy 2026-11-21\.3 \(prod\): 2 flag\(s\)/);
  assert.equal(await page.$$eval('#errors li', (l) => l.length), 0);
});

test('errors show with their places as you type', async () => {
  await setPolicy(example.replace('"variation": "candidate"', '"variation": "canddate"'));
  await page.waitForSelector('#errors li');
  const errors = await page.$$eval('#errors li', (l) => l.map((li) => li.textContent));
  assert.ok(
    errors.includes('flags[0].rules[2].split variation "canddate" is not defined in flags[0].variations'),
    errors.join('\n'),
  );
  assert.ok(await page.isDisabled('#evaluate'));
  await setPolicy(example);
  await page.waitForSelector('#summary.ok');
  assert.ok(await page.isEnabled('#evaluate'));
});

test('tenant acme on /v1/chat/completions gets candidate by TARGETING_MATCH', async () => {
  await setRequest({ path: '/v1/chat/completions', host: 'api.example', headers: { 'x-tenant-id': 'acme' } });
  await page.waitForSelector('#decisions tbody tr.decision');
  assert.deepEqual(await decisions(), [{
    flag: 'support_answer_model_route', variation: 'candidate', reason: 'TARGETING_MATCH', rule: '—', bucket: '—',
  }]);
  assert.equal(await page.textContent('#route'), 'Routed to cluster support_model_b.');
});

test('decisions with rules and buckets match the golden cases', async () => {
  const cases = golden.cases.filter((c) => c.policy === 'example' && c.expect.decisions.length > 0);
  assert.ok(cases.some((c) => c.expect.decisions.some((d) => d.bucket !== null)), 'a golden case with a bucket');
  for (const c of cases) {
    const headers = c.request.headers || {};
    // The form sends one value per header name; skip cases that need more.
    if (Object.keys(headers).some((k) => k.includes(':'))) continue;
    await setRequest({
      method: c.request.method || 'POST',
      path: c.request.path || '/',
      host: c.request.host || '',
      source_ip: c.request.source_ip || '',
      headers,
    });
    const want = c.expect.decisions.map((d) => ({
      flag: d.flag,
      variation: d.variation ?? '—',
      reason: d.reason + (d.error ? ` ${d.error}` : ''),
      rule: d.rule === null ? '—' : String(d.rule),
      bucket: d.bucket === null ? '—' : String(d.bucket),
    }));
    assert.deepEqual(await decisions(), want, c.name);
  }
});

test('simulate draws the distribution', async () => {
  await page.fill('#units', '5000');
  await page.click('#simulate');
  await page.waitForSelector('#chart svg rect');
  const summary = await page.textContent('#sim-summary');
  assert.match(summary, /^5000 synthetic requests \(seed 1\)/);
  const charts = await page.$$eval('#chart svg', (s) => s.map((x) => x.getAttribute('data-flag')));
  assert.deepEqual(charts, ['support_answer_model_route', 'agent_tools']);
  const labels = await page.$$eval('#chart svg text', (t) => t.map((x) => x.textContent));
  assert.ok(labels.some((l) => l.startsWith('paid canary → candidate (SPLIT)')), labels.join('\n'));
  assert.ok(labels.some((l) => l.startsWith('(consent) → reject (CONSENT_DENIED)')), labels.join('\n'));
  // Back to the acme request for the screenshot.
  await setRequest({ path: '/v1/chat/completions', host: 'api.example', headers: { 'x-tenant-id': 'acme', 'x-plan': 'pro' } });
  fs.mkdirSync(path.join(root, 'artifacts'), { recursive: true });
  await page.screenshot({ path: path.join(root, 'artifacts', 'playground.png'), fullPage: true });
  assert.deepEqual(pageErrors, []);
});
