// The addon's FdWatcher (uv_poll) on a FIFO: it is what dm.wait uses on the
// device-mapper control fd, and it must call back once, stop, and close.
import { execFileSync } from 'node:child_process';
import { constants } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { native } from '../../lib/binding';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fdw-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function fifo(name: string) {
  const path = join(dir, name);
  execFileSync('mkfifo', [path]);
  return open(path, constants.O_RDWR | constants.O_NONBLOCK);
}

it('calls back once when the fd turns readable, with promises settling in the callback', async () => {
  const fh = await fifo('a');
  const w = new native.FdWatcher(fh.fd);
  const calls: number[] = [];
  const fired = new Promise<number>((resolve) => w.start((status) => (calls.push(status), resolve(status))));
  await fh.write('x');
  expect(await fired).toBe(0);
  await new Promise((r) => setTimeout(r, 50));
  expect(calls).toEqual([0]); // stopped after one callback though the fd stays readable
  w.close();
  await fh.close();
});

it('stop() prevents the callback; start() re-arms', async () => {
  const fh = await fifo('b');
  const w = new native.FdWatcher(fh.fd);
  let called = 0;
  w.start(() => called++);
  w.stop();
  await fh.write('x');
  await new Promise((r) => setTimeout(r, 50));
  expect(called).toBe(0);
  await new Promise<void>((resolve) => w.start(() => resolve()));
  w.close();
  expect(() => w.start(() => undefined)).toThrow(/closed/);
  await fh.close();
});
