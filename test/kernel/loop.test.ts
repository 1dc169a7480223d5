import { execFile } from 'node:child_process';
import { existsSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { mkdir, open, truncate } from 'node:fs/promises';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { native } from '../../lib/binding';
import { loop } from '../../lib/index';
import { readBlock, SCRATCH, sparseFile, sweep, writeBlock } from './helpers';

const run = promisify(execFile);
const MiB = 1 << 20;
const makedev = (major: number, minor: number) => (major << 8) | (minor & 0xff) | ((minor & ~0xff) << 12);

beforeAll(sweep);
afterAll(sweep);
afterEach(() => vi.restoreAllMocks());

for (const legacy of [false, true]) {
  describe(legacy ? 'LOOP_SET_FD + LOOP_SET_STATUS64 (forced fallback)' : 'LOOP_CONFIGURE', () => {
    it(`attaches with the ${legacy ? 'legacy' : 'LOOP_CONFIGURE'} ioctls, and detaches`, async () => {
      const configure = vi.spyOn(native, 'loopAttach');
      const setFd = vi.spyOn(native, 'loopIoctl');
      const file = await sparseFile(`plain-${legacy}`, 16 * MiB);
      const dev = await loop.attach(file, { legacy });
      expect(configure).toHaveBeenCalledTimes(legacy ? 0 : 1);
      expect(setFd.mock.calls.some(([, op]) => op === 'LOOP_SET_FD')).toBe(legacy);
      expect(statSync(dev.path).isBlockDevice()).toBe(true);
      expect(await loop.info(dev.path)).toMatchObject({
        path: dev.path,
        number: dev.number,
        backingFile: file,
        offset: 0,
        sizeLimit: 0,
        size: 16 * MiB,
        readOnly: false,
        autoclear: false,
        partscan: false,
        blockSize: 512,
      });
      expect((await loop.list()).map((l) => l.path)).toContain(dev.path);
      await loop.detach(dev.number);
      await expect(loop.info(dev.path)).rejects.toMatchObject({ code: 'ENXIO', ioctl: 'LOOP_GET_STATUS64' });
    });

    it('maps a window of the file: offset and sizeLimit', async () => {
      const file = await sparseFile(`window-${legacy}`, 16 * MiB);
      const marker = Buffer.alloc(512, 0xab);
      await writeBlock(file, 2 * MiB, marker);
      const dev = await loop.attach(file, { legacy, offset: 2 * MiB, sizeLimit: 4 * MiB });
      expect(await loop.info(dev.path)).toMatchObject({ offset: 2 * MiB, sizeLimit: 4 * MiB, size: 4 * MiB });
      expect((await readBlock(dev.path, 0, 512)).equals(marker)).toBe(true);
      await loop.detach(dev.path);
    });

    it('read-only: flagged, and refuses writes', async () => {
      const dev = await loop.attach(await sparseFile(`ro-${legacy}`, 4 * MiB), { legacy, readOnly: true });
      expect((await loop.info(dev.path)).readOnly).toBe(true);
      await expect(writeBlock(dev.path, 0, Buffer.alloc(512, 1))).rejects.toMatchObject({
        code: expect.stringMatching(/EACCES|EROFS|EPERM/),
      });
      await loop.detach(dev.path);
    });

    it('sets the logical block size and partscan', async () => {
      const dev = await loop.attach(await sparseFile(`bs-${legacy}`, 4 * MiB), { legacy, blockSize: 4096, partscan: true });
      expect(await loop.info(dev.path)).toMatchObject({ blockSize: 4096, partscan: true });
      await loop.detach(dev.path);
    });

    it('autoclear: held open by the returned device, gone after release()', async () => {
      const file = await sparseFile(`ac-${legacy}`, 4 * MiB);
      const dev = await loop.attach(file, { legacy, autoclear: true });
      expect(await loop.info(dev.path)).toMatchObject({ autoclear: true, backingFile: file });
      await dev.release();
      await expect(loop.info(dev.path)).rejects.toMatchObject({ code: 'ENXIO' });
    });
  });
}

describe('direct I/O', () => {
  it('falls back to buffered I/O on tmpfs and is in effect on ext4, switchable', async () => {
    const onTmpfs = await loop.attach(await sparseFile('dio-tmpfs', 4 * MiB), { directIo: true });
    expect(onTmpfs.directIo).toBe(false); // tmpfs has no O_DIRECT
    await loop.detach(onTmpfs.path);

    const fsDev = await loop.attach(await sparseFile('dio-fs', 64 * MiB));
    await run('mkfs.ext4', ['-q', '-F', fsDev.path]);
    const mnt = `${SCRATCH}/dio-mnt`;
    await mkdir(mnt, { recursive: true });
    await native.mount(fsDev.path, mnt, 'ext4', 0, '');
    try {
      const file = `${mnt}/backing`;
      await (await open(file, 'w')).close();
      await truncate(file, 8 * MiB);
      for (const legacy of [false, true]) {
        const dev = await loop.attach(file, { directIo: true, legacy });
        expect(dev.directIo).toBe(true);
        expect((await loop.info(dev.path)).directIo).toBe(true);
        await loop.setDirectIo(dev.path, false);
        expect((await loop.info(dev.path)).directIo).toBe(false);
        await loop.detach(dev.path);
      }
    } finally {
      await native.umount2(mnt, 0);
      await loop.detach(fsDev.path);
    }
  });
});

describe('capacity, races, errors', () => {
  it('refreshCapacity picks up a grown backing file', async () => {
    const file = await sparseFile('grow', 16 * MiB);
    const dev = await loop.attach(file);
    await truncate(file, 48 * MiB);
    expect((await loop.info(dev.path)).size).toBe(16 * MiB);
    await loop.refreshCapacity(dev.number);
    expect((await loop.info(dev.path)).size).toBe(48 * MiB);
    await loop.detach(dev.path);
  });

  it('concurrent attaches race for the same free device and all succeed (EBUSY retry), nodes made past loop7', async () => {
    for (const legacy of [false, true]) {
      const files = await Promise.all(Array.from({ length: 10 }, (_, i) => sparseFile(`race-${legacy}-${i}`, MiB)));
      const devs = await Promise.all(files.map((f) => loop.attach(f, { legacy })));
      expect(new Set(devs.map((d) => d.number)).size).toBe(10);
      for (const [i, d] of devs.entries()) {
        expect(existsSync(d.path)).toBe(true);
        expect((await loop.info(d.path)).backingFile).toBe(files[i]);
      }
      await Promise.all(devs.map((d) => loop.detach(d.path)));
    }
  });

  it('makes a missing node, and replaces one that is not the loop device, on attach and on detach', async () => {
    const file = await sparseFile('nodes', MiB);
    const first = await loop.attach(file);
    await loop.detach(first.number);
    // The next attach takes the same free device: give it a wrong node (/dev/null's numbers).
    unlinkSync(first.path);
    native.mknodSync(first.path, native.sysConstants.S_IFBLK | 0o660, 1, 3);
    const dev = await loop.attach(file);
    expect(dev.number).toBe(first.number);
    const [major, minor] = readFileSync(`/sys/block/loop${dev.number}/dev`, 'utf8').trim().split(':').map(Number);
    expect({ major: dev.major, minor: dev.minor }).toEqual({ major, minor });
    expect(statSync(dev.path).rdev).toBe(makedev(major!, minor!));
    expect((await loop.info(dev.path)).backingFile).toBe(file);
    unlinkSync(dev.path);
    await loop.detach(dev.number); // no node: made again
    expect(existsSync(dev.path)).toBe(true);
    await expect(loop.info(dev.path)).rejects.toMatchObject({ code: 'ENXIO' });
  });

  it('DEVMAPPER_LOOP_LEGACY=1 forces the fallback', async () => {
    const configure = vi.spyOn(native, 'loopAttach');
    process.env.DEVMAPPER_LOOP_LEGACY = '1';
    try {
      const dev = await loop.attach(await sparseFile('env-legacy', MiB));
      expect(configure).not.toHaveBeenCalled();
      await loop.detach(dev.path);
    } finally {
      delete process.env.DEVMAPPER_LOOP_LEGACY;
    }
  });

  it('reports clear errors', async () => {
    await expect(loop.attach(`${SCRATCH}/missing`)).rejects.toMatchObject({ code: 'ENOENT', syscall: 'open' });
    const dev = await loop.attach(await sparseFile('err', MiB));
    await loop.detach(dev.path);
    await expect(loop.detach(dev.path)).rejects.toMatchObject({
      code: 'ENXIO',
      ioctl: 'LOOP_CLR_FD',
      message: expect.stringContaining('not attached'),
    });
    await expect(loop.attach(await sparseFile('bad', MiB), { blockSize: 1000 })).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARG' });
    await expect(loop.detach('/dev/sda')).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARG' });
  });
});
