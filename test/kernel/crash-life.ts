// One life of a crash test's child: it opens (and so recovers) a set or a
// snapshotter, reports whether records and the pool agree, works until a
// SIGKILL at a chosen moment. Used by device-set-crash.test.ts and
// snapshotter-crash.test.ts.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface Report {
  phase?: string;
  op?: string;
  pool?: number;
  records?: number;
  inPoolOnly?: number[];
  inRecordsOnly?: number[];
  dupes?: number[];
}

/** Run one child: wait for its report, let it work for `workMs` (or kill during open), SIGKILL it. */
export function oneLife(
  child: string,
  root: string,
  seed: number,
  killDuringOpen: boolean,
  workMs: number,
): Promise<{ report?: Report; inside: boolean }> {
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
