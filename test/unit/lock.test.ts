// The set's lock: a live holder is refused at once, naming its pid; a holder
// that has died (its fork had not yet exec'd a tool when it was killed) is
// waited out.
import { spawnSync } from 'node:child_process';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { takeLock } from '../../lib/device-set/setup';
import * as sys from '../../lib/sys';

let root = '';
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'devmapper-lock-'));
});
afterAll(() => rm(root, { recursive: true, force: true }));

/** Hold root/lock on another open file (flock locks belong to the open file, so this process conflicts with itself). */
async function holdAs(pid: number) {
  const fh = await open(join(root, 'lock'), 'a+');
  await sys.lockExclusiveNow(fh.fd, 'lock');
  await writeFile(join(root, 'lock'), `${pid}\n`);
  return fh;
}

it('refuses a live holder at once, naming it', async () => {
  const held = await holdAs(process.pid);
  const started = Date.now();
  await expect(takeLock(root)).rejects.toMatchObject({ code: 'ERR_DM_LOCKED', message: expect.stringContaining(`process ${process.pid}`) });
  expect(Date.now() - started).toBeLessThan(9000); // refused, not waited on: the dead-holder wait is 10 s
  await held.close();
});

it('waits out a holder that has died, and takes the lock once it is released', async () => {
  const dead = spawnSync('true').pid!; // exited: no such process now
  const held = await holdAs(dead);
  let taken = false;
  const taking = takeLock(root).then((fh) => ((taken = true), fh));
  await new Promise((r) => setTimeout(r, 300));
  expect(taken).toBe(false); // still held: waiting, not refused
  await held.close();
  const fh = await taking;
  expect(taken).toBe(true);
  await fh.close();
});
