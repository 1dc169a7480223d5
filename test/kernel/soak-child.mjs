// Child process of soak.test.ts: thin lifecycles in a fresh process, with
// figures on stdout as one JSON line. Run with --expose-gc and a fixed young
// generation (--min/max-semi-space-size), so that V8 growing its nursery
// with the allocation rate is not mistaken for a leak.
import { readdirSync, readlinkSync } from 'node:fs';
import { createRequire } from 'node:module';

const { ThinPool } = createRequire(import.meta.url)('../../dist/index.js');
const [dir, name, thinName, cyclesText] = process.argv.slice(2);
const cycles = Number(cyclesText);
const settled = () => {
  globalThis.gc();
  globalThis.gc();
  return process.memoryUsage();
};
// Open descriptors by target (an fd read while listing the directory is gone by then).
const fds = () =>
  readdirSync('/proc/self/fd')
    .map((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`);
      } catch {
        return null;
      }
    })
    .filter(Boolean)
    .sort();

const pool = await ThinPool.createLoopBacked({ dir, name, dataSize: '256M', metadataSize: '16M' });
const cycle = async (i) => {
  const id = await pool.createThin(i % 1000);
  const dev = await pool.activate(id, { name: thinName, size: '64M' });
  await pool.deactivate(dev.name);
  await pool.deleteThin(id);
};
const warmUp = Math.min(1000, Math.floor(cycles / 2)); // long enough to fill the fixed nursery once
for (let i = 0; i < warmUp; i++) await cycle(i);
const fds0 = fds();
const m0 = settled();
const samples = [];
const t0 = performance.now();
for (let i = warmUp; i < cycles; i++) {
  await cycle(i);
  if ((i + 1) % Math.ceil(cycles / 10) === 0) samples.push(settled().rss);
}
const ms = performance.now() - t0;
const fds1 = fds();
const m1 = settled();
const status = await pool.status();
await pool.destroy();
process.stdout.write(
  `${JSON.stringify({ cycles, warmUp, msPerCycle: ms / (cycles - warmUp), fds0, fds1, rss0: m0.rss, rss1: m1.rss, heap0: m0.heapUsed, heap1: m1.heapUsed, samples, usedDataBlocks: status.usedDataBlocks, metadataFile: pool.loopBacking.metadataFile })}\n`,
);
