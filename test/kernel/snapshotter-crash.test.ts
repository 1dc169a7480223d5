// Crash safety of the Snapshotter: SIGKILL a process at random points inside
// prepare, view, commit and remove (and inside open's own recovery); every
// following open must find pool and records in agreement.
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Snapshotter } from '../../lib/index';
import { oneLife, type Report } from './crash-life';
import { SCRATCH, sweep, sweepSets, thinCheck } from './helpers';

const KILLS = Number(process.env.DEVMAPPER_SNAPSHOTTER_KILLS ?? 60);
const child = join(__dirname, 'snapshotter-crash-child.mjs');

beforeAll(sweep);
afterAll(sweepSets);

it(`snapshots and pool agree after ${KILLS} SIGKILLs inside prepare/view/commit/remove`, async () => {
  const root = `${SCRATCH}/crash-snapshotter`;
  const first = await Snapshotter.open({ root, baseSize: '32M', dataSize: '2G', metadataSize: '16M' });
  const metadataFile = first.pool.loopBacking!.metadataFile;
  await first.close();

  let seed = 777;
  let inside = 0;
  const reports: Report[] = [];
  for (let k = 0; k < KILLS; k++) {
    seed = (seed * 69069 + 1) >>> 0;
    const killDuringOpen = k % 10 === 9;
    const life = await oneLife(child, root, seed, killDuringOpen, killDuringOpen ? seed % 400 : 100 + (seed % 900));
    if (life.inside) inside++;
    if (life.report) reports.push(life.report);
  }
  const bad = reports.filter((r) => r.inPoolOnly!.length + r.inRecordsOnly!.length + r.dupes!.length > 0);
  console.log(
    `snapshotter crash test: ${KILLS} kills, ${inside} inside an operation; ${reports.length} reopens checked, ${bad.length} inconsistent; ` +
      `last: ${reports.at(-1)?.records} records, ${reports.at(-1)?.pool} thin ids`,
  );
  expect(bad).toEqual([]);
  expect(reports.length).toBeGreaterThan(KILLS * 0.8);
  expect(inside).toBeGreaterThan(KILLS / 2);

  // A last open: recovery, agreement, every snapshot's info readable; then the pool down and thin_check.
  const last = await Snapshotter.open({ root, baseSize: '32M' });
  const infos: string[] = [];
  await last.walk((i) => void infos.push(i.name));
  expect(infos.length).toBe(last.records().length);
  await last.cleanup();
  await last.pool.destroy();
  await last.close();
  await thinCheck(metadataFile);
}, 600_000);
