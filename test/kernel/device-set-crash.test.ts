// Crash safety: SIGKILL a process at random points inside create, snapshot,
// grow and remove sequences (and inside open's own recovery), many times;
// every following open must find pool and records in agreement.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { DeviceSet, dm } from '../../lib/index';
import { SCRATCH, sweep, thinCheck } from './helpers';

const KILLS = Number(process.env.DEVMAPPER_CRASH_KILLS ?? 200);
const child = join(__dirname, 'crash-child.mjs');

interface Report {
  phase?: string;
  op?: string;
  pool?: number;
  records?: number;
  inPoolOnly?: number[];
  inRecordsOnly?: number[];
  dupes?: number[];
}

/** Run one child: wait for its report, let it work for `workMs` (or kill during open), SIGKILL it. */
function oneLife(root: string, seed: number, killDuringOpen: boolean, workMs: number): Promise<{ report?: Report; inside: boolean }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [child, root, String(seed)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let report: Report | undefined;
    let last = '';
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const kill = (ms: number) => setTimeout(() => p.kill('SIGKILL'), ms);
    createInterface({ input: p.stdout }).on('line', (line) => {
      const m = JSON.parse(line) as Report;
      if (m.phase === 'opening' && killDuringOpen) kill(workMs);
      if (m.phase === 'ready') {
        report = m;
        if (!killDuringOpen) kill(workMs);
      }
      if (m.op) last = m.op;
    });
    p.on('exit', (code, signal) => {
      if (signal !== 'SIGKILL') return reject(new Error(`child exited ${code} before the kill: ${stderr}`));
      resolve({ report, inside: last === 'begin' || (killDuringOpen && report === undefined) });
    });
  });
}

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
    const life = await oneLife(root, seed, killDuringOpen, killDuringOpen ? seed % 400 : seed % 120);
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
}, 600_000);
