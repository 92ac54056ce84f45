#!/usr/bin/env node
// Reads mocha's JSON report and prints the failures, then one line "N passed, N failed".
// Exit status: 0 when nothing failed and at least one test ran.
import { readFileSync } from 'node:fs';

const file = process.argv[2];
if (!file) {
  console.error('usage: ci-summary.mjs MOCHA_JSON');
  process.exit(2);
}
const report = JSON.parse(readFileSync(file, 'utf8'));
const stats = report.stats ?? {};
const failures = report.failures ?? [];
for (const f of failures) {
  console.log(`FAIL ${f.fullTitle}`);
  const msg = (f.err && (f.err.stack || f.err.message)) || '';
  for (const line of String(msg).split('\n').slice(0, 12)) console.log(`    ${line}`);
}
const passed = stats.passes ?? 0;
const failed = (stats.failures ?? 0);
const pending = stats.pending ?? 0;
console.log(`${passed} passed, ${failed} failed${pending ? `, ${pending} skipped` : ''}`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
