// The JavaScript build (js/pkg/node, made by js/build.sh) against the engine's golden cases,
// and against the native `switchyard` command. Run: node --test js/test/
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const root = path.resolve(__dirname, '..', '..');
const pkg = path.join(root, 'js', 'pkg', 'node', 'switchyard_js.js');
if (!fs.existsSync(pkg)) {
  throw new Error(`${pkg} is missing: run js/build.sh first`);
}
const engine = require(pkg);

const golden = JSON.parse(fs.readFileSync(path.join(root, 'testdata', 'golden.json'), 'utf8'));
const policyText = {};
for (const [name, rel] of Object.entries(golden.policies)) {
  policyText[name] = fs.readFileSync(path.join(root, rel), 'utf8');
}
const example = policyText.example;

test('golden.json has cases for every policy it names', () => {
  assert.ok(golden.cases.length > 0);
  for (const c of golden.cases) {
    assert.ok(policyText[c.policy], `${c.name}: unknown policy ${c.policy}`);
  }
});

test('every golden case: decisions, buckets and route equal expect', async (t) => {
  for (const c of golden.cases) {
    await t.test(c.name, () => {
      const got = engine.evaluate(policyText[c.policy], c.request);
      assert.deepEqual(got, c.expect);
      // The request may also be given as the JSON line itself.
      assert.deepEqual(engine.evaluate(policyText[c.policy], JSON.stringify(c.request)), c.expect);
      // Spelled out, since these are what the issue is about.
      assert.deepEqual(
        got.decisions.map((d) => [d.flag, d.variation, d.reason, d.rule, d.bucket]),
        c.expect.decisions.map((d) => [d.flag, d.variation, d.reason, d.rule, d.bucket]),
      );
    });
  }
});

test('check: a summary for a valid policy', () => {
  const r = engine.check(example);
  assert.equal(r.ok, true);
  assert.deepEqual(r.errors, []);
  assert.equal(r.summary.version, '2026-11-21.3');
  assert.deepEqual(r.summary.flags.map((f) => f.key), ['support_answer_model_route', 'agent_tools']);
  assert.match(r.summary.text, /^ok: policy 2026-11-21\.3 \(prod\): 2 flag\(s\)/);
});

test('check: every error with its place', () => {
  const p = JSON.parse(example);
  p.flags[0].rules[2].split[0].variation = 'canddate';
  p.flags[0].enabeld = false;
  const r = engine.check(JSON.stringify(p));
  assert.equal(r.ok, false);
  assert.equal(r.summary, null);
  const lines = r.errors.map((e) => `${e.place}: ${e.message}`);
  assert.ok(
    lines.includes('flags[0].rules[2].split: variation "canddate" is not defined in flags[0].variations'),
    lines.join('\n'),
  );
  assert.ok(r.errors.some((e) => e.place === 'flags[0].enabeld'), lines.join('\n'));
  const broken = engine.check('{"version": ');
  assert.equal(broken.ok, false);
  assert.equal(broken.errors[0].place, '');
  assert.match(broken.errors[0].message, /not valid JSON/);
});

test('evaluate throws for an invalid policy or request', () => {
  assert.throws(() => engine.evaluate('{}', {}), /policy refused/);
  assert.throws(() => engine.evaluate(example, 'not json'), /bad request/);
  assert.throws(() => engine.evaluate(example, { headers: { 'x-tenant-id': 7 } }), /bad request/);
});

test('simulate: deterministic, adds up, defaults to 10000 units', () => {
  const a = engine.simulate(example, 2000);
  assert.deepEqual(a, engine.simulate(example, 2000, 1));
  assert.notDeepEqual(a, engine.simulate(example, 2000, 2));
  assert.equal(a.requests, 2000);
  for (const f of a.flags) {
    assert.equal(f.rows.reduce((n, r) => n + r.count, 0), f.in_scope, f.flag);
  }
  const reject = a.flags[1].rows.find((r) => r.reason === 'CONSENT_DENIED');
  assert.equal(reject.variation, null);
  assert.equal(reject.count, a.rejected);
  assert.equal(engine.simulate(example).requests, 10000);
  assert.throws(() => engine.simulate('{}', 10), /policy refused/);
});

// The same report as the native command, where it has been built (cargo build -p switchyard-policy).
const cli = process.env.SWITCHYARD_BIN || path.join(root, 'target', 'debug', 'switchyard');
test('simulate equals `switchyard simulate --json`', { skip: !fs.existsSync(cli) && `no ${cli}` }, () => {
  for (const [name, rel] of Object.entries(golden.policies)) {
    const native = JSON.parse(
      execFileSync(cli, ['simulate', path.join(root, rel), '--units', '3000', '--seed', '9', '--json'], {
        encoding: 'utf8',
      }),
    );
    assert.deepEqual(engine.simulate(policyText[name], 3000, 9), native, name);
  }
});
