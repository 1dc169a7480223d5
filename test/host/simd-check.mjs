// Run inside the VM by vm.test.ts: four worker threads hammer code that uses
// vector registers (SHA-256, big Buffer copies and compares, JSON) while the
// single guest CPU switches between them. Any result that differs from the
// first computation means FP/SIMD state leaked across a context switch.
import { createHash, randomBytes } from 'node:crypto';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

const MS = 2000;

function work(seed) {
  const data = Buffer.from(seed, 'hex');
  const big = Buffer.alloc(1 << 20);
  for (let i = 0; i < big.length; i += data.length) data.copy(big, i);
  const copy = Buffer.alloc(big.length);
  big.copy(copy);
  const doc = { seed, values: Array.from({ length: 2000 }, (_, i) => ({ i, f: i / 7, s: seed.slice(i % 32) })) };
  return [
    createHash('sha256').update(big).digest('hex'),
    Buffer.compare(big, copy),
    createHash('sha256')
      .update(JSON.stringify(JSON.parse(JSON.stringify(doc))))
      .digest('hex'),
    doc.values.reduce((a, v) => a + Math.sqrt(v.f) * Math.sin(v.i), 0),
  ].join(',');
}

if (isMainThread) {
  const seeds = Array.from({ length: 4 }, () => randomBytes(64).toString('hex'));
  const expected = seeds.map(work);
  const counts = await Promise.all(
    seeds.map(
      (seed, i) =>
        new Promise((resolve, reject) => {
          const w = new Worker(new URL(import.meta.url), { workerData: { seed, expected: expected[i] } });
          w.on('message', resolve);
          w.on('error', reject);
        }),
    ),
  );
  const bad = counts.filter((c) => c.mismatches > 0);
  console.log(`simd-check: ${counts.reduce((a, c) => a + c.iterations, 0)} iterations in 4 threads, ${bad.length} with mismatches`);
  process.exit(bad.length === 0 ? 0 : 1);
} else {
  let iterations = 0;
  let mismatches = 0;
  const end = Date.now() + MS;
  while (Date.now() < end) {
    if (work(workerData.seed) !== workerData.expected) mismatches++;
    iterations++;
  }
  parentPort.postMessage({ iterations, mismatches });
}
