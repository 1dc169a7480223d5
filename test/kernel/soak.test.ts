// Soak: many thin lifecycles in one process (fds, RSS, leftovers), and 8
// concurrent callers on one pool (no lost or doubled thin id). Figures are
// printed for the README's Guarantees.
//
// DEVMAPPER_SOAK_CYCLES sets the cycle count; the default is 20,000 when
// CI is set (CI runs the long soak) and 2,000 otherwise.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dm, ThinPool } from '../../lib/index';
import { PREFIX, RUN, SCRATCH, sweep, thinIds } from './helpers';

const CYCLES = Number(process.env.DEVMAPPER_SOAK_CYCLES ?? (process.env.CI ? 20_000 : 2_000));
const MiB = 1 << 20;

const run = promisify(execFile);

beforeAll(sweep);
afterAll(sweep);

describe('soak', () => {
  it(`${CYCLES} create/activate/deactivate/delete cycles: no fd leak, RSS growth under 5 MB, nothing left`, async () => {
    // In a child process: the figures are the library's, not the test runner's.
    const { stdout } = await run(
      process.execPath,
      [
        '--expose-gc',
        '--min-semi-space-size=16',
        '--max-semi-space-size=16',
        join(__dirname, 'soak-child.mjs'),
        `${SCRATCH}/soak`,
        `${RUN}soak-pool`,
        `${RUN}soak-thin`,
        String(CYCLES),
      ],
      { maxBuffer: 1 << 20, timeout: 3_500_000 },
    );
    const r = JSON.parse(stdout) as {
      cycles: number;
      warmUp: number;
      msPerCycle: number;
      fds0: string[];
      fds1: string[];
      rss0: number;
      rss1: number;
      heap0: number;
      heap1: number;
      samples: number[];
      usedDataBlocks: number;
      metadataFile: string;
    };
    const growth = (r.rss1 - r.rss0) / MiB;
    console.log(
      `soak: ${r.cycles} cycles (${r.warmUp} warm-up), ${r.msPerCycle.toFixed(2)} ms per cycle; fds ${r.fds0.length} → ${r.fds1.length}; ` +
        `RSS ${(r.rss0 / MiB).toFixed(1)} → ${(r.rss1 / MiB).toFixed(1)} MiB (growth ${growth.toFixed(2)} MiB; samples ${r.samples.map((x) => (x / MiB).toFixed(1)).join(' ')}); ` +
        `JS heap in use ${(r.heap0 / MiB).toFixed(2)} → ${(r.heap1 / MiB).toFixed(2)} MiB`,
    );
    expect(r.fds1).toEqual(r.fds0);
    // Under AddressSanitizer freed memory sits in its quarantine (up to 256 MB): RSS says nothing there.
    if (!process.env.LD_PRELOAD?.includes('libasan')) expect(growth).toBeLessThan(5);
    expect(r.usedDataBlocks).toBe(0);
    expect((await dm.list()).filter((d) => d.name.startsWith(PREFIX)).map((d) => d.name)).toEqual([]);
    expect(await thinIds(r.metadataFile)).toEqual([]);
  }, 3_600_000);

  it('8 concurrent callers, 2,000 operations on one pool: no error a sequential run would not give, no lost or doubled thin id', async () => {
    const pool = await ThinPool.createLoopBacked({
      dir: `${SCRATCH}/conc`,
      name: `${RUN}conc-pool`,
      dataSize: '256M',
      metadataSize: '16M',
    });
    const owner = new Map<number, number>(); // live thin id → caller
    const doubled: number[] = [];
    const errors: string[] = [];
    const counts = { create: 0, snapshot: 0, activate: 0, delete: 0 };
    let seed = 12345;
    const random = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    const took = (id: number, caller: number) => {
      if (owner.has(id)) doubled.push(id);
      owner.set(id, caller);
    };
    const caller = async (me: number, ops: number) => {
      const mine: number[] = [];
      for (let n = 0; n < ops; n++) {
        const r = random();
        try {
          if (mine.length === 0 || r < 0.3) {
            const id = await pool.createThin();
            took(id, me);
            mine.push(id);
            counts.create++;
          } else if (r < 0.5) {
            const origin = mine[Math.floor(random() * mine.length)]!;
            const id = await pool.createSnapshot(undefined, origin);
            took(id, me);
            mine.push(id);
            counts.snapshot++;
          } else if (r < 0.7) {
            const id = mine[Math.floor(random() * mine.length)]!;
            const dev = await pool.activate(id, { name: `${RUN}conc-${me}`, size: '16M' });
            await pool.deactivate(dev.name);
            counts.activate++;
          } else {
            const id = mine.splice(Math.floor(random() * mine.length), 1)[0]!;
            owner.delete(id);
            await pool.deleteThin(id);
            counts.delete++;
          }
        } catch (e) {
          errors.push(`caller ${me}: ${(e as Error).message}`);
        }
      }
      for (const id of mine) {
        owner.delete(id);
        await pool.deleteThin(id);
      }
    };
    const t0 = performance.now();
    await Promise.all(Array.from({ length: 8 }, (_, i) => caller(i, 250)));
    const ms = performance.now() - t0;
    console.log(
      `8 callers: 2000 operations in ${ms.toFixed(0)} ms (${JSON.stringify(counts)}); errors ${errors.length}; doubled ids ${doubled.length}`,
    );
    expect(errors).toEqual([]);
    expect(doubled).toEqual([]);
    expect(owner.size).toBe(0);
    expect(counts.create + counts.snapshot + counts.activate + counts.delete).toBe(2000);
    await pool.destroy();
    expect(await thinIds(pool.loopBacking!.metadataFile)).toEqual([]); // none lost: every id made was deleted
  }, 600_000);
});
