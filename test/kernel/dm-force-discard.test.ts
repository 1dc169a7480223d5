// dm.remove({ force }) for a wedged device (dmsetup remove --force), and
// dm.discard (BLKDISCARD, containerd's DiscardBlocks) giving a loop-backed
// pool's space back to the host file.
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { open, readFile, stat } from 'node:fs/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dm, loop, ThinPool } from '../../lib/index';
import { gone, RUN, SCRATCH, sparseFile, sweep, writeBlock } from './helpers';

const MiB = 1 << 20;
const dmsetup = async (...args: string[]) =>
  (await promisify(execFile)('dmsetup', args, { env: { ...process.env, DM_DISABLE_UDEV: '1' } })).stdout.trim();

beforeAll(sweep);
afterAll(sweep);

/** Resolves once process `pid` sleeps uninterruptibly (blocked on I/O), or rejects after `ms`. */
async function blockedInIo(pid: number, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('D')) return;
    if (Date.now() > end) throw new Error(`process ${pid} never blocked on I/O`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('remove({ force: true })', () => {
  it('fails the I/O a suspended device holds, so its wedged writer lets go, and removes it', async () => {
    const backing = await loop.attach(await sparseFile('force-backing', 8 * MiB));
    const name = `${RUN}wedged`;
    const dev = await dm.create(name, { table: [{ start: 0, length: (8 * MiB) / 512, type: 'linear', params: `${backing.path} 0` }] });
    // A writer that has the device open before it is suspended (its open must
    // not be what blocks), then writes and syncs until a write fails.
    const script = `const fs = require('fs'); const fd = fs.openSync(${JSON.stringify(dev.path)}, 'r+'); console.log('open');
      const b = Buffer.alloc(4096, 1);
      try { for (;;) { fs.writeSync(fd, b, 0, b.length, 0); fs.fsyncSync(fd); } } catch (e) { console.error(e.code); process.exit(1); }`;
    const writer = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    writer.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => writer.on('exit', (code) => r(code)));
    await new Promise<void>((resolve) => writer.stdout.on('data', (d: Buffer) => d.toString().includes('open') && resolve()));
    await dm.suspend(name);
    await blockedInIo(writer.pid!);
    expect(await dm.remove(name, { force: true })).toEqual({ deferred: false });
    expect(await exited).toBe(1);
    expect(stderr.trim()).toBe('EIO');
    expect(await dm.info(name).catch((e: { code: string }) => e.code)).toBe('ENXIO');
    await loop.detach(backing.path);
  });

  it('with deferred: the holder gets EIO at once, the device goes on its last close', async () => {
    const name = `${RUN}held`;
    const dev = await dm.create(name, { table: [{ start: 0, length: 2048, type: 'zero', params: '' }] });
    const fh = await open(dev.path, 'r');
    expect(await dm.remove(name, { force: true, deferred: true })).toEqual({ deferred: true });
    expect(await dmsetup('table', name)).toBe('0 2048 error');
    await expect(fh.read(Buffer.alloc(4096), 0, 4096, 0)).rejects.toMatchObject({ code: 'EIO' });
    await fh.close();
    expect(await gone(name)).toBe(true);
  });

  it('without deferred, a holder that stays still fails it with EBUSY; the table is error by then', async () => {
    const name = `${RUN}stays`;
    const dev = await dm.create(name, { table: [{ start: 0, length: 2048, type: 'zero', params: '' }] });
    const fh = await open(dev.path, 'r');
    try {
      await expect(dm.remove(name, { force: true, retry: { attempts: 2, delayMs: 5 } })).rejects.toMatchObject({
        code: 'EBUSY',
        ioctl: 'DM_DEV_REMOVE',
      });
      expect(await dmsetup('table', name)).toBe('0 2048 error');
    } finally {
      await fh.close();
    }
    await dm.remove(name);
  });

  it('rejects a bad option before any ioctl', async () => {
    await expect(dm.remove(`${RUN}none`, { force: 'yes' as unknown as boolean })).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARG' });
  });
});

describe('discard', () => {
  it("unmaps a thin device's blocks and punches them out of the pool's sparse data file", async () => {
    const pool = await ThinPool.createLoopBacked({
      dir: `${SCRATCH}/discard`,
      name: `${RUN}discard-pool`,
      dataSize: '256M',
      metadataSize: '16M',
    });
    try {
      const dev = await pool.createThinDevice({ name: `${RUN}discard-thin`, size: '64M' });
      await writeBlock(dev.path, 0, randomBytes(32 * MiB));
      const allocated = async () =>
        Number(
          (await promisify(execFile)('stat', ['-c', '%b*%B', pool.loopBacking!.dataFile])).stdout
            .trim()
            .split('*')
            .reduce((a, b) => a * Number(b), 1),
        );
      const before = await allocated();
      expect(before).toBeGreaterThanOrEqual(32 * MiB);
      expect((await pool.thinUsage(dev.thinId)).mappedBytes).toBe(32 * MiB);

      // The first half, then the rest of the device.
      expect(await dm.discard(dev.name, { offset: 0, length: 16 * MiB })).toEqual({ offset: 0, length: 16 * MiB });
      expect((await pool.thinUsage(dev.thinId)).mappedBytes).toBe(16 * MiB);
      expect(await dm.discard(dev.name)).toEqual({ offset: 0, length: 64 * MiB });
      expect((await pool.thinUsage(dev.thinId)).mappedBytes).toBe(0);
      expect(before - (await allocated())).toBeGreaterThanOrEqual(32 * MiB);
      expect((await stat(pool.loopBacking!.dataFile)).size).toBe(256 * MiB); // the file keeps its length

      await expect(dm.discard(dev.name, { offset: 100 })).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARG' });
      await expect(dm.discard(dev.name, { offset: 64 * MiB, length: 512 })).rejects.toMatchObject({
        code: 'ERR_DM_INVALID_ARG',
        message: expect.stringContaining('past the end'),
      });
      await expect(dm.discard(`${RUN}no-such`)).rejects.toMatchObject({ code: 'ENXIO' });
      await pool.removeThinDevice(dev.name, dev.thinId);
    } finally {
      await pool.destroy();
    }
  });
});
