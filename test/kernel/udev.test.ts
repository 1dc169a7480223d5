// With udev managing /dev the library waits (bounded) for udev's node rather
// than making its own, leaves removal to udev, and makes the node itself
// when udev never does. The child runs in a private mount namespace with a
// tmpfs on /run holding udev/control, so nothing outside it changes; only in
// the test VMs, where the rest of /dev is ours too.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { inTestVm, RUN, SCRATCH, sweep } from './helpers';

const child = join(__dirname, 'udev-child.mjs');

interface Seen {
  createMs: number;
  mode: number | null;
  leftByRemove: number | null;
  afterUdev: number | null;
  udevSyncSupported: boolean | null;
  umask: number;
}

async function withUdev(name: string, delay: string, setRoot = ''): Promise<Seen> {
  const script = `mount -t tmpfs tmpfs /run && mkdir /run/udev && : > /run/udev/control && exec "$0" "$@"`;
  const { stdout } = await promisify(execFile)('unshare', [
    '-m',
    'sh',
    '-c',
    script,
    process.execPath,
    child,
    name,
    delay,
    ...(setRoot ? [setRoot] : []),
  ]);
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as Seen;
}

beforeAll(sweep);
afterAll(sweep);

it('waits for the node udev makes, and leaves its removal to udev', async (ctx) => {
  if (!(await inTestVm())) ctx.skip(); // it mounts over /run and makes nodes in /dev
  const seen = await withUdev(`${RUN}udev`, '150', `${SCRATCH}/udev-set`);
  console.log(`udev stand-in made the node after 150 ms: create returned after ${seen.createMs} ms`);
  expect(seen.mode).toBe(0o600); // udev's node, not one the library made
  expect(seen.createMs).toBeGreaterThanOrEqual(140);
  expect(seen.createMs).toBeLessThan(2000); // the library's wait: a later node would have been its own (mode above)
  expect(seen.leftByRemove).toBe(0o600); // the library did not unlink it
  expect(seen.afterUdev).toBeNull(); // udev did
  expect(seen.udevSyncSupported).toBe(true);
});

it('makes the node itself when udev has not made it within its wait', async (ctx) => {
  if (!(await inTestVm())) ctx.skip();
  const seen = await withUdev(`${RUN}noudev`, 'never');
  console.log(`udev stand-in never made the node: create returned after ${seen.createMs} ms`);
  expect(seen.mode).toBe(0o660 & ~seen.umask); // the library's own (mknod applies the umask)
  expect(seen.createMs).toBeGreaterThanOrEqual(1900);
  expect(seen.createMs).toBeLessThan(15_000); // bounded, with room for a busy machine
  expect(seen.leftByRemove).toBe(seen.mode); // removal is still udev's job: the node stays
});
