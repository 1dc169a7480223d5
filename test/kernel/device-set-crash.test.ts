// Crash safety: SIGKILL a process at random points inside create, snapshot,
// grow and remove sequences (and inside open's own recovery), many times;
// every following open must find pool and records in agreement.
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { DeviceSet, dm } from '../../lib/index';
import { oneLife, type Report } from './crash-life';
import { SCRATCH, sweep, thinCheck } from './helpers';

const KILLS = Number(process.env.DEVMAPPER_CRASH_KILLS ?? 200);
const child = join(__dirname, 'crash-child.mjs');

beforeAll(sweep);
afterAll(async () => {
  for (const d of await dm.list()) if (d.name.startsWith('devmapper-')) await dm.remove(d.name).catch(() => undefined);
  await sweep();
});

it(`pool and records agree after ${KILLS} SIGKILLs inside create/snapshot/remove sequences`, async () => {
  const root = `${SCRATCH}/crash-set`;
  const first = await DeviceSet.open({ root, baseSize: '32M', dataSize: '2G', metadataSize: '16M' });
  const metadataFile = first.pool.loopBacking!.metadataFile;
  await first.close();

  let seed = 12345;
  let inside = 0;
  let duringOpen = 0;
  const reports: Report[] = [];
  for (let k = 0; k < KILLS; k++) {
    seed = (seed * 69069 + 1) >>> 0;
    const killDuringOpen = k % 10 === 9;
    const life = await oneLife(child, root, seed, killDuringOpen, killDuringOpen ? seed % 400 : seed % 120);
    if (life.inside) inside++;
    if (killDuringOpen && !life.report) duringOpen++;
    if (life.report) reports.push(life.report);
  }
  const bad = reports.filter((r) => r.inPoolOnly!.length + r.inRecordsOnly!.length + r.dupes!.length > 0);
  console.log(
    `crash test: ${KILLS} kills, ${inside} inside an operation, ${duringOpen} during open/recovery; ` +
      `${reports.length} reopens checked, ${bad.length} inconsistent; last: ${reports.at(-1)?.records} records, ${reports.at(-1)?.pool} thin ids`,
  );
  expect(bad).toEqual([]);
  expect(reports.length).toBeGreaterThan(KILLS * 0.8);
  expect(inside).toBeGreaterThan(KILLS / 2); // the kills really land inside sequences

  // A last clean open: recovery, agreement, teardown, and thin_check on the metadata.
  const last = await DeviceSet.open({ root });
  const records = new Set(last.records().map((r) => r.deviceId));
  expect(records.size).toBe(last.list().length + 1 + last.records().filter((r) => r.deleted).length); // + base
  await last.close();
  await thinCheck(metadataFile);
}, 1_800_000); // 387 s in a loaded CI run; its 200 node children are most of it
