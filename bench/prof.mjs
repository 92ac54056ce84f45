// Summarise .cpuprofile files (node --cpu-prof): self time by function, top N.
//   node bench/prof.mjs FILE.cpuprofile [N]
import { readFileSync } from 'node:fs';

const [file, topN = '25'] = process.argv.slice(2);
const p = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const self = new Map();
const dt = p.timeDeltas;
let total = 0;
for (let i = 0; i < p.samples.length; i++) {
  const n = byId.get(p.samples[i]);
  const f = n.callFrame;
  const key = `${f.functionName || '(anon)'} ${f.url.split('/').slice(-2).join('/')}:${f.lineNumber + 1}`;
  self.set(key, (self.get(key) ?? 0) + (dt[i] ?? 0));
  total += dt[i] ?? 0;
}
const rows = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, Number(topN));
console.log(`${file}: ${(total / 1000).toFixed(0)} ms sampled`);
for (const [k, v] of rows) console.log(`${((v / total) * 100).toFixed(1).padStart(5)}%  ${(v / 1000).toFixed(1).padStart(8)} ms  ${k}`);
