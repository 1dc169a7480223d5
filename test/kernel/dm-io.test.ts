// Suspend/resume with I/O in flight, and the lockfs flag seen through a
// mounted file system.
import { execFile } from 'node:child_process';
import { mkdir, open } from 'node:fs/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { native } from '../../lib/binding';
import { dm, loop } from '../../lib/index';
import { readBlock, RUN, SCRATCH, sparseFile, sweep } from './helpers';

const run = promisify(execFile);
const settledWithin = <T>(p: Promise<T>, ms: number) =>
  Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);

let backing: loop.LoopDevice;
beforeAll(async () => {
  await sweep();
  backing = await loop.attach(await sparseFile('io', 64 << 20));
});
afterAll(sweep);

const linear = (length = 131072): dm.Target[] => [{ start: 0, length, type: 'linear', params: `${backing.path} 0` }];

describe('suspend and resume', () => {
  it('holds writes while suspended and completes them on resume', async () => {
    const name = `${RUN}susp`;
    const dev = await dm.create(name, { table: linear() });
    await dm.suspend(name);
    expect((await dm.info(name)).suspended).toBe(true);
    const data = Buffer.alloc(4096, 0x5a);
    const fh = await open(dev.path, 'r+');
    const write = fh.write(data, 0, data.length, 8192).then(() => fh.sync());
    expect(await settledWithin(write, 300)).toBe(false); // queued behind the suspend
    await dm.resume(name);
    await write;
    await fh.close();
    expect((await dm.info(name)).suspended).toBe(false);
    expect((await readBlock(backing.path, 8192, 4096)).equals(data)).toBe(true);
    await dm.remove(name);
  });

  it('swaps in a loaded table on resume (the table reload procedure)', async () => {
    const name = `${RUN}swap`;
    await dm.create(name, { table: linear(2048) });
    await dm.load(name, linear(4096));
    expect((await dm.table(name))[0]!.length).toBe(2048); // still the old one live
    await dm.suspend(name);
    await dm.resume(name);
    expect((await dm.table(name))[0]!.length).toBe(4096);
    expect((await dm.info(name)).inactiveTable).toBe(false);
    await dm.remove(name);
  });

  it('freezes a mounted file system unless skipLockfs, and accepts noFlush', async () => {
    const name = `${RUN}fs`;
    const dev = await dm.create(name, { table: linear() });
    await run('mkfs.ext4', ['-q', '-F', dev.path]);
    const mnt = `${SCRATCH}/mnt`;
    await mkdir(mnt, { recursive: true });
    await native.mount(dev.path, mnt, 'ext4', 0, '');
    // An open, written and synced file: a further write needs no device I/O
    // unless the file system is frozen.
    const fh = await open(`${mnt}/a`, 'w+');
    await fh.write(Buffer.alloc(4096, 1), 0, 4096, 0);
    await fh.sync();
    try {
      // skipLockfs: the file system is not frozen, a buffered write returns.
      await dm.suspend(name, { skipLockfs: true, noFlush: true });
      expect((await dm.info(name)).suspended).toBe(true);
      expect(await settledWithin(fh.write(Buffer.alloc(16, 2), 0, 16, 0), 30_000)).toBe(true); // returns, not held by the suspend
      await dm.resume(name);
      // Default: the file system is frozen, a write waits for the resume.
      await dm.suspend(name);
      const w = fh.write(Buffer.alloc(16, 3), 0, 16, 0);
      expect(await settledWithin(w, 500)).toBe(false);
      await dm.resume(name);
      await w;
    } finally {
      await dm.resume(name).catch(() => undefined);
      await fh.close();
      await native.umount2(mnt, 0);
    }
    await dm.remove(name);
  });
});
