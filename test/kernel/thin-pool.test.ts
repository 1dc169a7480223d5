import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { mkdir, open, readFile, stat, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { native } from '../../lib/binding';
import { dm, DmError, loop, ThinPool } from '../../lib/index';
import { gone, RUN, SCRATCH, sparseFile, sweep, thinCheck } from './helpers';

const run = promisify(execFile);
const MiB = 1 << 20;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function mounted<T>(dev: string, name: string, body: (dir: string) => Promise<T>, fresh = false): Promise<T> {
  if (fresh) await run('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard,lazy_itable_init=0,lazy_journal_init=0', dev]);
  const dir = `${SCRATCH}/mnt-${name}`;
  await mkdir(dir, { recursive: true });
  await native.mount(dev, dir, 'ext4', 0, '');
  try {
    return await body(dir);
  } finally {
    await native.umount2(dir, 0);
  }
}

const loopPool = (tag: string, extra: Partial<Parameters<typeof ThinPool.createLoopBacked>[0]> = {}) =>
  ThinPool.createLoopBacked({ dir: `${SCRATCH}/${tag}`, name: `${RUN}${tag}-pool`, dataSize: '256M', metadataSize: '16M', ...extra });

beforeAll(sweep);
afterAll(sweep);

describe('loop-backed pool', () => {
  it('creates sparse files, loop devices and the pool table with Docker defaults', async () => {
    const pool = await loopPool('basic');
    expect(pool.blockSize).toBe(64 * 1024);
    expect(pool.lowWaterMark).toBe(409); // a tenth of its 4096 blocks: Docker's 32768 would exceed the pool
    expect(pool.features).toEqual(['skip_block_zeroing']);
    const files = pool.loopBacking!;
    expect((await stat(files.dataFile)).size).toBe(256 * MiB);
    expect((await stat(files.dataFile)).blocks).toBeLessThan(64); // sparse
    const s = await pool.status();
    expect(s).toMatchObject({
      mode: 'rw',
      transactionId: 0,
      usedDataBlocks: 0,
      totalDataBlocks: (256 * MiB) / (64 * 1024),
      heldMetadataRoot: null,
      needsCheck: false,
      errorIfNoSpace: false,
    });
    expect(s.totalMetadataBlocks).toBe((16 * MiB) / 4096);
    expect(s.alerts).toEqual([]); // not below its own low water mark from the start
    const [t] = await dm.table(pool.name);
    expect(t!.params.trimEnd()).toMatch(/^7:\d+ 7:\d+ 128 409 1 skip_block_zeroing$/);
    await pool.destroy();
  });

  it('names the pool <prefix>-MAJ:MIN-INO-pool after its directory by default', async () => {
    const dir = `${SCRATCH}/named`;
    await mkdir(dir, { recursive: true });
    const st = await stat(dir);
    const pool = await ThinPool.createLoopBacked({ dir, prefix: `${RUN}dk`, dataSize: '64M', metadataSize: '4M' });
    expect(pool.name).toMatch(new RegExp(`^${RUN}dk-\\d+:\\d+-${st.ino}-pool$`));
    await pool.destroy();
  });

  it('honours blockSize, lowWaterMark, errorIfNoSpace and blockZeroing', async () => {
    const pool = await loopPool('opts', { blockSize: '128K', lowWaterMark: 100, errorIfNoSpace: true, blockZeroing: true });
    const [t] = await dm.table(pool.name);
    expect(t!.params.trimEnd()).toMatch(/ 256 100 1 error_if_no_space$/);
    expect((await pool.status()).errorIfNoSpace).toBe(true);
    await pool.destroy();
  });

  it('keeps data through destroy and reopen of the same dir, and reopens a live pool', async () => {
    const pool = await loopPool('reopen');
    const id = await pool.createThin(5);
    const dev = await pool.activate(id, { name: `${RUN}reopen-thin`, size: '64M' });
    const payload = randomBytes(100_000);
    await mounted(dev.path, 'reopen', (d) => writeFile(`${d}/f`, payload), true);
    await pool.deactivate(dev.name);
    expect((await ThinPool.createLoopBacked({ dir: `${SCRATCH}/reopen`, name: pool.name })).name).toBe(pool.name); // live: opened
    await pool.destroy();
    expect((await dm.list()).some((d) => d.name === pool.name)).toBe(false);

    const again = await loopPool('reopen');
    expect((await again.status()).usedDataBlocks).toBeGreaterThan(0);
    const dev2 = await again.activate(5, { name: `${RUN}reopen-thin`, size: '64M' });
    expect(sha(await mounted(dev2.path, 'reopen', (d) => readFile(`${d}/f`)))).toBe(sha(payload));
    await again.destroy();
  });

  it('destroy leaves no device and no loop, refuses while a thin device is open, and thin_check passes', async () => {
    const pool = await loopPool('teardown');
    await pool.createThin(1);
    const dev = await pool.activate(1, { name: `${RUN}teardown-thin`, size: '16M' });
    await mounted(
      dev.path,
      'teardown',
      async () => {
        await expect(pool.destroy()).rejects.toMatchObject({ code: 'EBUSY', message: expect.stringContaining(dev.name) });
        expect((await dm.info(pool.name)).name).toBe(pool.name); // nothing was torn down
      },
      true,
    );
    await pool.destroy(); // takes the inactive-but-active thin device with it
    const names = (await dm.list()).map((d) => d.name);
    expect(names).not.toContain(pool.name);
    expect(names).not.toContain(dev.name);
    const files = [pool.loopBacking!.dataFile, pool.loopBacking!.metadataFile];
    expect((await loop.list()).filter((l) => files.includes(l.backingFile))).toEqual([]);
    await thinCheck(pool.loopBacking!.metadataFile);
  });

  it('opens an existing pool by name', async () => {
    const pool = await loopPool('open');
    const opened = await ThinPool.open(pool.name);
    expect(opened.blockSize).toBe(pool.blockSize);
    expect(opened.dataSize).toBe(pool.dataSize);
    expect(opened.loopBacking).toEqual(pool.loopBacking);
    await expect(ThinPool.open(`${RUN}not-there`)).rejects.toMatchObject({ code: 'ENXIO' });
    const other = `${RUN}zero-dev`;
    await dm.create(other, { table: [{ start: 0, length: 8, type: 'zero', params: '' }] });
    await expect(ThinPool.open(other)).rejects.toMatchObject({
      code: 'ERR_DM_INVALID_ARG',
      message: expect.stringContaining('not a thin pool'),
    });
    await dm.remove(other);
    await opened.destroy();
  });
});

describe('direct pool on block devices', () => {
  it('creates on given devices, zeroing metadata when asked, and reloads at a grown device size', async () => {
    const data = await loop.attach(await sparseFile('direct-data', 128 * MiB));
    const meta = await loop.attach(await sparseFile('direct-meta', 8 * MiB));
    const pool = await ThinPool.create({ name: `${RUN}direct-pool`, dataDevice: data.path, metadataDevice: meta.path, zeroMetadata: true });
    expect(pool.loopBacking).toBeUndefined();
    expect((await pool.status()).totalDataBlocks).toBe(2048);
    await expect(pool.resize({ dataSize: '1G' })).rejects.toMatchObject({
      code: 'ERR_DM_INVALID_ARG',
      message: expect.stringContaining('block devices'),
    });
    // Grow the "LV" underneath, then resize with no sizes.
    await run('truncate', ['-s', `${256 * MiB}`, `${SCRATCH}/direct-data`]);
    await loop.refreshCapacity(data.path);
    await pool.resize();
    expect((await pool.status()).totalDataBlocks).toBe(4096);
    await pool.destroy();
    await loop.detach(data.path);
    await loop.detach(meta.path);
    await thinCheck(`${SCRATCH}/direct-meta`);
  });

  it('destroy of a pool on loop devices someone else attached (losetup) leaves them attached, also when opened by name', async () => {
    const dataFile = await sparseFile('user-data', 128 * MiB);
    const metaFile = await sparseFile('user-meta', 8 * MiB);
    const data = (await run('losetup', ['--find', '--show', dataFile])).stdout.trim();
    const meta = (await run('losetup', ['--find', '--show', metaFile])).stdout.trim();
    try {
      const name = `${RUN}user-loops-pool`;
      await ThinPool.create({ name, dataDevice: data, metadataDevice: meta, zeroMetadata: true });
      const opened = await ThinPool.open(name); // what `devmapper pool destroy NAME` does
      expect(opened.loopBacking).toBeDefined(); // it sees the loop files...
      await opened.destroy();
      await expect(dm.info(name)).rejects.toMatchObject({ code: 'ENXIO' });
      // ...but the loops are the user's: still attached to their files.
      expect((await loop.info(data)).backingFile).toBe(dataFile);
      expect((await loop.info(meta)).backingFile).toBe(metaFile);
    } finally {
      await loop.detach(data).catch(() => undefined);
      await loop.detach(meta).catch(() => undefined);
    }
  });
});

describe('thin devices and snapshots', () => {
  let pool: ThinPool;
  beforeAll(async () => {
    pool = await loopPool('cow');
  });
  afterAll(() => pool.destroy());

  it('snapshot chains are copy-on-write at every layer, taken from a mounted origin', async () => {
    const base = await pool.createThin(1);
    const baseDev = await pool.activate(base, { name: `${RUN}base`, size: '64M' });
    const original = randomBytes(200_000);
    // Snapshot while the origin is mounted and being written: suspended (frozen) and resumed.
    await mounted(
      baseDev.path,
      'base',
      async (d) => {
        await writeFile(`${d}/shared`, original);
        expect(await pool.createSnapshot(2, base)).toBe(2);
        expect((await dm.info(baseDev.name)).suspended).toBe(false);
        await writeFile(`${d}/after-snap`, 'origin only');
      },
      true,
    );
    const image = await pool.activate(2, { name: `${RUN}image`, size: '64M' });
    const changed = randomBytes(200_000);
    await mounted(image.path, 'image', async (d) => {
      expect(sha(await readFile(`${d}/shared`))).toBe(sha(original));
      await expect(readFile(`${d}/after-snap`)).rejects.toMatchObject({ code: 'ENOENT' });
      await writeFile(`${d}/shared`, changed);
      await writeFile(`${d}/image-file`, 'image');
    });
    // A snapshot of the (inactive) snapshot.
    expect(await pool.createSnapshot(3, 2)).toBe(3);
    const container = await pool.activate(3, { name: `${RUN}container`, size: '64M' });
    await mounted(container.path, 'container', async (d) => {
      expect(sha(await readFile(`${d}/shared`))).toBe(sha(changed));
      expect(await readFile(`${d}/image-file`, 'utf8')).toBe('image');
      await writeFile(`${d}/image-file`, 'container');
    });
    // Each lower layer is unchanged by the writes above it.
    await mounted(image.path, 'image', async (d) => expect(await readFile(`${d}/image-file`, 'utf8')).toBe('image'));
    await mounted(baseDev.path, 'base', async (d) => {
      expect(sha(await readFile(`${d}/shared`))).toBe(sha(original));
      await expect(readFile(`${d}/image-file`)).rejects.toMatchObject({ code: 'ENOENT' });
    });
    for (const d of [container, image, baseDev]) await pool.deactivate(d.name);
    for (const id of [3, 2, 1]) await pool.deleteThin(id);
  });

  it('status and usage follow the data written', async () => {
    const id = await pool.createThin(10);
    const dev = await pool.activate(id, { name: `${RUN}usage`, size: '64M' });
    const before = await pool.usage();
    const fh = await (await import('node:fs/promises')).open(dev.path, 'r+');
    await fh.write(randomBytes(8 * MiB), 0, 8 * MiB, 0);
    await fh.sync();
    await fh.close();
    const after = await pool.usage();
    expect(after.data.used - before.data.used).toBe(8 * MiB); // 128 blocks of 64K
    expect(after.data.total).toBe(256 * MiB);
    expect(after.data.available).toBe(after.data.total - after.data.used);
    expect(after.metadata.used).toBeGreaterThanOrEqual(before.metadata.used);
    expect(after.metadata.total).toBe(16 * MiB);
    await pool.deactivate(dev.name);
    await pool.deleteThin(id);
    expect((await pool.usage()).data.used).toBe(before.data.used);
  });

  it('picks the next free id, skipping ids that exist', async () => {
    const fresh = await loopPool('ids');
    await fresh.createThin(0);
    await fresh.createThin(1);
    expect(await fresh.createThin()).toBe(2);
    const ids = await Promise.all(Array.from({ length: 8 }, () => fresh.createThin()));
    expect(new Set(ids).size).toBe(8);
    expect(await fresh.createSnapshot(undefined, 0)).toBeGreaterThan(2);
    await fresh.destroy();
  });

  it('serialises concurrent snapshots of one active origin and resumes it even when a snapshot fails', async () => {
    const id = await pool.createThin(20);
    const origin = await pool.activate(id, { name: `${RUN}origin`, size: '16M' });
    const results = await Promise.all([21, 22, 23, 24].map((n) => pool.createSnapshot(n, id)));
    expect(results).toEqual([21, 22, 23, 24]);
    await expect(pool.createSnapshot(21, id)).rejects.toMatchObject({ code: 'EEXIST' });
    expect((await dm.info(origin.name)).suspended).toBe(false);
    await expect(pool.createSnapshot(30, 999)).rejects.toMatchObject({ code: 'ENODATA', message: expect.stringContaining('999') });
    await expect(pool.deleteThin(id)).rejects.toMatchObject({ code: 'EBUSY', message: expect.stringContaining(origin.name) });
    await pool.deactivate(origin.name);
    for (const n of [20, 21, 22, 23, 24]) await pool.deleteThin(n);
    await expect(pool.deleteThin(20)).rejects.toMatchObject({ code: 'ENODATA' });
  });

  it('transaction id and metadata snapshot', async () => {
    await pool.setTransactionId(0, 7);
    expect((await pool.status()).transactionId).toBe(7);
    await expect(pool.setTransactionId(0, 8)).rejects.toMatchObject({ code: 'EINVAL', message: expect.stringContaining('not 0') });
    await pool.reserveMetadataSnap();
    expect((await pool.status()).heldMetadataRoot).not.toBeNull();
    await pool.releaseMetadataSnap();
    expect((await pool.status()).heldMetadataRoot).toBeNull();
  });

  it('createThin, createSnapshot and deleteThin move the transaction id in the same trip; a refused move undoes a create, not a delete', async () => {
    const t = (await pool.status()).transactionId;
    await pool.createThin(50, { transactionId: { from: t, to: t + 1 } });
    await pool.createSnapshot(51, 50, { transactionId: { from: t + 1, to: t + 2 } });
    expect((await pool.status()).transactionId).toBe(t + 2);
    // The kernel refuses a move from where the pool is not: the new thin id goes again.
    const refused = { code: 'EINVAL', message: expect.stringContaining(`not ${t}`) };
    await expect(pool.createSnapshot(52, 50, { transactionId: { from: t, to: t + 9 } })).rejects.toMatchObject(refused);
    await expect(pool.createThin(53, { transactionId: { from: t, to: t + 9 } })).rejects.toMatchObject(refused);
    for (const undone of [52, 53]) await pool.createThin(undone); // EEXIST if the refused create had stayed
    for (const undone of [52, 53]) await pool.deleteThin(undone);
    // A delete cannot be undone: the move refused, the thin id stays deleted.
    await expect(pool.deleteThin(51, { transactionId: { from: t, to: t + 9 } })).rejects.toMatchObject(refused);
    await expect(pool.deleteThin(51)).rejects.toMatchObject({ code: 'ENODATA' });
    await pool.deleteThin(50, { transactionId: { from: t + 2, to: t + 3 } });
    expect((await pool.status()).transactionId).toBe(t + 3);
    // Bad options: refused before any ioctl (54 is not made).
    for (const bad of [{ transactionId: { from: -1, to: 1 } }, { transactionId: { from: 1 } }, { transactionId: 5 }, { commit: true }]) {
      await expect(pool.createThin(54, bad as never)).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARG' });
      await expect(pool.createSnapshot(54, 50, bad as never)).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARG' });
      await expect(pool.deleteThin(54, bad as never)).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARG' });
    }
    await pool.createThin(54);
    await pool.deleteThin(54);
  });

  it('deferred deactivation of an open thin device', async () => {
    const id = await pool.createThin(40);
    const dev = await pool.activate(id, { name: `${RUN}deferred`, size: '16M' });
    const fh = await (await import('node:fs/promises')).open(dev.path, 'r');
    expect(await pool.deactivate(dev.name, { deferred: true })).toEqual({ deferred: true });
    await fh.close();
    expect(await gone(dev.name)).toBe(true);
    await pool.deleteThin(id);
  });
});

describe('one-trip thin devices: createThinDevice, createSnapshotDevice, removeThinDevice', () => {
  let pool: ThinPool;
  beforeAll(async () => {
    pool = await loopPool('onetrip');
  });
  afterAll(() => pool.destroy());
  // Whether thin id `id` exists in the live pool (create_thin answers EEXIST).
  const exists = (id: number) =>
    pool.createThin(id).then(
      async () => (await pool.deleteThin(id), false),
      (e: DmError) => (e.code === 'EEXIST' ? true : Promise.reject(e)),
    );
  const live = async () => (await pool.activeDevices()).sort((a, b) => a.thinId - b.thinId);

  it('creates and activates in one trip, picks a free id, and removes and deletes in one', async () => {
    const seq = vi.spyOn(native, 'dmIoctlSeq');
    const ioctl = vi.spyOn(native, 'dmIoctl');
    const dev = await pool.createThinDevice({ thinId: 3, name: `${RUN}one`, size: '16M' });
    expect(seq).toHaveBeenCalledTimes(1);
    expect(ioctl).not.toHaveBeenCalled();
    expect(dev).toMatchObject({
      thinId: 3,
      name: `${RUN}one`,
      path: `/dev/mapper/${RUN}one`,
      suspended: false,
      readOnly: false,
      activeTable: true,
    });
    expect(statSync(dev.path).isBlockDevice()).toBe(true);
    expect(await dm.table(dev.name)).toEqual([{ start: 0, length: (16 * MiB) / 512, type: 'thin', params: expect.stringMatching(/ 3$/) }]);
    const ro = await pool.createThinDevice({ name: `${RUN}two`, size: 8 * MiB, readOnly: true });
    expect(ro.thinId).not.toBe(3);
    expect(ro.readOnly).toBe(true);
    expect(await live()).toEqual(
      [
        { name: dev.name, thinId: 3 },
        { name: ro.name, thinId: ro.thinId },
      ].sort((a, b) => a.thinId - b.thinId),
    );
    seq.mockClear();
    ioctl.mockClear();
    await pool.removeThinDevice(dev.name, dev.thinId);
    expect(seq).toHaveBeenCalledTimes(1);
    expect(ioctl).not.toHaveBeenCalled();
    expect(existsSync(dev.path)).toBe(false);
    expect(await exists(3)).toBe(false);
    await pool.removeThinDevice(ro.name, ro.thinId);
    expect(await live()).toEqual([]);
    vi.restoreAllMocks();
  });

  it('undoes a create that fails half-way: the id is deleted, the device that had the name untouched', async () => {
    const taken = await pool.createThinDevice({ thinId: 5, name: `${RUN}taken`, size: '8M' });
    await expect(pool.createThinDevice({ thinId: 6, name: taken.name, size: '8M' })).rejects.toMatchObject({
      code: 'EBUSY',
      message: expect.stringContaining('already exists'),
    });
    expect(await exists(6)).toBe(false);
    await expect(pool.createThinDevice({ thinId: 5, name: `${RUN}dup`, size: '8M' })).rejects.toMatchObject({ code: 'EEXIST' });
    expect(await dm.info(`${RUN}dup`).catch((e: DmError) => e.code)).toBe('ENXIO');
    expect(await live()).toEqual([{ name: taken.name, thinId: 5 }]);
    expect(await dm.table(taken.name)).toEqual([expect.objectContaining({ params: expect.stringMatching(/ 5$/) })]);
    await pool.removeThinDevice(taken.name, 5);
  });

  it('snapshots an active, mounted origin into an active device; the origin is resumed, and a failed snapshot undone', async () => {
    const origin = await pool.createThinDevice({ thinId: 10, name: `${RUN}snap-origin`, size: '64M' });
    const payload = randomBytes(100_000);
    const snap = await mounted(
      origin.path,
      'snap-origin',
      async (d) => {
        await writeFile(`${d}/f`, payload);
        const s = await pool.createSnapshotDevice(origin.thinId, { name: `${RUN}snap`, size: '64M' });
        expect((await dm.info(origin.name)).suspended).toBe(false);
        await writeFile(`${d}/after`, 'origin only');
        return s;
      },
      true,
    );
    await mounted(snap.path, 'snap', async (d) => {
      expect(sha(await readFile(`${d}/f`))).toBe(sha(payload));
      await expect(readFile(`${d}/after`)).rejects.toMatchObject({ code: 'ENOENT' });
    });
    // The name is taken: the snapshot id is deleted again, and the origin is not left suspended.
    await expect(pool.createSnapshotDevice(origin.thinId, { thinId: 12, name: snap.name, size: '64M' })).rejects.toMatchObject({
      code: 'EBUSY',
    });
    expect(await exists(12)).toBe(false);
    await expect(pool.createSnapshotDevice(999, { thinId: 13, name: `${RUN}nosuch`, size: '64M' })).rejects.toMatchObject({
      code: 'ENODATA',
      message: expect.stringContaining('999'),
    });
    expect((await dm.info(origin.name)).suspended).toBe(false);
    await pool.removeThinDevice(snap.name, snap.thinId);
    await pool.removeThinDevice(origin.name, origin.thinId);
    expect(await live()).toEqual([]);
  });

  it('a snapshot checks its guess of the active origins in the same trip, and redoes itself when a device changed behind its back', async () => {
    await pool.createThin(30);
    await pool.createThin(31);
    const dev = await pool.activate(30, { name: `${RUN}guess`, size: '8M' }); // the pool now believes the device maps 30
    // Another process reloads it to map 31.
    const [t] = await dm.table(dev.name);
    await dm.load(dev.name, [{ ...t!, params: t!.params.replace(/ 30$/, ' 31') }]);
    await dm.suspend(dev.name);
    await dm.resume(dev.name);
    const seq = vi.spyOn(native, 'dmIoctlSeq');
    const ioctl = vi.spyOn(native, 'dmIoctl');
    expect(await pool.createSnapshot(32, 31)).toBe(32);
    const seqs = seq.mock.calls.map(([, steps]) =>
      steps.map(
        ([command, request]) =>
          `${command}${request.message ? ` ${request.message}` : ''}${request.flags === native.dmFlags.DM_SUSPEND_FLAG ? ` suspend ${request.name}` : ''}`,
      ),
    );
    // The guess (no origin to suspend) was made, found wrong, undone; then made again with the origin suspended.
    expect(seqs[0]).toEqual(['DM_TABLE_STATUS', 'DM_TARGET_MSG create_snap 32 31']);
    expect(ioctl.mock.calls.map(([, command, request]) => `${command} ${request.message}`)).toContain('DM_TARGET_MSG delete 32');
    expect(seqs.at(-1)).toEqual([`DM_DEV_SUSPEND suspend ${dev.name}`, 'DM_TARGET_MSG create_snap 32 31', 'DM_DEV_SUSPEND']);
    expect((await dm.info(dev.name)).suspended).toBe(false);
    // Now the pool knows: the next snapshot is one trip, suspending the device.
    seq.mockClear();
    ioctl.mockClear();
    expect(await pool.createSnapshot(33, 31)).toBe(33);
    expect(seq).toHaveBeenCalledTimes(1);
    expect(ioctl).not.toHaveBeenCalled();
    vi.restoreAllMocks();
    // Removed and its minor taken by another device behind the pool's back: the
    // guessed origin is not there; the snapshot still succeeds, the other device untouched.
    await dm.remove(dev.name);
    const other = await dm.create(`${RUN}guess-other`, { table: [{ ...t!, params: t!.params.replace(/ 30$/, ' 31') }] });
    expect(other.minor).toBe(dev.minor);
    const again = vi.spyOn(native, 'dmIoctlSeq');
    expect(await pool.createSnapshot(34, 31)).toBe(34); // the guess suspends the gone device by name: ENXIO, then the careful way
    expect(again.mock.calls.at(-1)![1].map(([command, request]) => `${command} ${request.name ?? ''}`)).toEqual([
      `DM_DEV_SUSPEND ${other.name}`,
      'DM_TARGET_MSG ' + pool.name,
      `DM_DEV_SUSPEND ${other.name}`,
    ]);
    vi.restoreAllMocks();
    expect((await dm.info(other.name)).suspended).toBe(false);
    await dm.remove(other.name);
    for (const id of [30, 31, 32, 33, 34]) await pool.deleteThin(id);
    expect(await live()).toEqual([]);
  });

  it("activeDevices keeps going while devices vanish between the sysfs read and the trip, and ignores another pool's device on a reused number", async () => {
    const keep = await pool.createThinDevice({ thinId: 40, name: `${RUN}ad-keep`, size: '8M' });
    const victims: string[] = [];
    for (let i = 0; i < 11; i++) victims.push((await pool.createThinDevice({ thinId: 41 + i, name: `${RUN}ad-${i}`, size: '8M' })).name);
    // Before every trip, one more device goes away (as under 8 concurrent callers): more than any fixed number of retries.
    const real = native.dmIoctlSeq.bind(native);
    const gone: string[] = [];
    const seq = vi.spyOn(native, 'dmIoctlSeq').mockImplementation(async (fd, steps) => {
      const victim = victims.shift();
      if (victim) {
        await dm.remove(victim);
        gone.push(victim);
      }
      return real(fd, steps);
    });
    const seen = await pool.activeDevices();
    vi.restoreAllMocks();
    expect(seq.mock.calls.length).toBeLessThanOrEqual(13); // each failed trip shortens the list
    const names = seen.map((d) => d.name);
    expect(names).toContain(keep.name);
    for (const v of victims) expect(names).toContain(v); // still active: all found
    expect(seen.filter((d) => d.name !== keep.name).every((d) => d.thinId === 41 + Number(d.name.slice(`${RUN}ad-`.length)))).toBe(true);
    for (const v of [...victims, ...gone]) await dm.remove(v).catch((e: DmError) => expect(e.code).toBe('ENXIO'));
    for (let i = 0; i < 11; i++) await pool.deleteThin(41 + i);

    // A device removed, and its number taken by a thin device of another pool, between the sysfs read and the trip.
    const other = await loopPool('onetrip-other');
    await other.createThin(1);
    const doomed = await pool.createThinDevice({ thinId: 41, name: `${RUN}ad-doomed`, size: '8M' });
    let stranger: dm.DeviceInfo | undefined;
    vi.spyOn(native, 'dmIoctlSeq').mockImplementationOnce(async (fd, steps) => {
      await dm.remove(doomed.name);
      stranger = await other.activate(1, { name: `${RUN}ad-stranger`, size: '8M' });
      return real(fd, steps);
    });
    expect(await pool.activeDevices()).toEqual([{ name: keep.name, thinId: 40 }]);
    vi.restoreAllMocks();
    expect(stranger?.minor).toBe(doomed.minor);
    await other.deactivate(stranger!.name);
    await other.destroy();
    await pool.deleteThin(41);
    await pool.removeThinDevice(keep.name, keep.thinId);
    expect(await live()).toEqual([]);
  });

  it('removeThinDevice changes nothing while the device is open, and puts the device back when the delete fails', async () => {
    const a = await pool.createThinDevice({ thinId: 20, name: `${RUN}rm-a`, size: '8M', readOnly: true });
    const b = await pool.createThinDevice({ thinId: 21, name: `${RUN}rm-b`, size: '8M' });
    const fh = await open(a.path, 'r');
    await expect(pool.removeThinDevice(a.name, a.thinId)).rejects.toMatchObject({
      code: 'EBUSY',
      message: expect.stringContaining('in use'),
    });
    await fh.close();
    // Wrong id, one another device maps: a's device comes back as it was.
    await expect(pool.removeThinDevice(a.name, b.thinId)).rejects.toMatchObject({
      code: 'EBUSY',
      message: expect.stringContaining(b.name),
    });
    expect(await dm.info(a.name)).toMatchObject({ readOnly: true, suspended: false });
    expect(statSync(a.path).isBlockDevice()).toBe(true);
    // An id that does not exist: the same.
    await expect(pool.removeThinDevice(a.name, 77)).rejects.toMatchObject({ code: 'ENODATA' });
    expect(await live()).toEqual([
      { name: a.name, thinId: 20 },
      { name: b.name, thinId: 21 },
    ]);
    await expect(pool.removeThinDevice(`${RUN}none`, 20)).rejects.toMatchObject({ code: 'ENXIO' });
    await pool.removeThinDevice(a.name, a.thinId);
    await pool.removeThinDevice(b.name, b.thinId);
    expect(await live()).toEqual([]);
  });

  it('refuses bad input before any ioctl', async () => {
    const seq = vi.spyOn(native, 'dmIoctlSeq');
    const ioctl = vi.spyOn(native, 'dmIoctl');
    for (const [call, field] of [
      [() => pool.createThinDevice({ name: `${RUN}x`, size: 1000 }), 'multiple of 512'],
      [() => pool.createThinDevice({ thinId: -1, name: `${RUN}x`, size: '8M' }), 'options.thinId'],
      [() => pool.createThinDevice({ name: 'a/b', size: '8M' }), 'options.name'],
      [() => pool.createThinDevice({ name: `${RUN}x`, size: '8M', bogus: 1 } as never), 'bogus'],
      [() => pool.createSnapshotDevice(2 ** 24, { name: `${RUN}x`, size: '8M' }), 'originThinId'],
      [() => pool.removeThinDevice(`${RUN}x`, 1.5), 'thinId'],
      [() => pool.removeThinDevice('', 1), 'name'],
    ] as const) {
      await expect(call()).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARG', message: expect.stringContaining(field) });
    }
    expect(seq).not.toHaveBeenCalled();
    expect(ioctl).not.toHaveBeenCalled();
    vi.restoreAllMocks();
  });
});

describe('resize', () => {
  it('grows data and metadata while a thin device is mounted; the data survives', async () => {
    const pool = await loopPool('grow', { dataSize: '64M' });
    const id = await pool.createThin(1);
    const dev = await pool.activate(id, { name: `${RUN}grow-thin`, size: '256M' });
    const first = randomBytes(8 * MiB);
    await mounted(
      dev.path,
      'grow',
      async (d) => {
        await writeFile(`${d}/first`, first);
        await pool.resize({ dataSize: '192M', metadataSize: '32M' });
        const s = await pool.status();
        expect(s.totalDataBlocks).toBe((192 * MiB) / (64 * 1024));
        expect(s.totalMetadataBlocks).toBe((32 * MiB) / 4096);
        expect(pool.dataSize).toBe(192 * MiB);
        expect((await stat(pool.loopBacking!.dataFile)).size).toBe(192 * MiB);
        const more = randomBytes(80 * MiB); // more than the whole pool held before
        await writeFile(`${d}/more`, more);
        expect(sha(await readFile(`${d}/more`))).toBe(sha(more));
      },
      true,
    );
    await mounted(dev.path, 'grow', async (d) => expect(sha(await readFile(`${d}/first`))).toBe(sha(first)));
    await expect(pool.resize({ dataSize: '128M' })).rejects.toMatchObject({
      code: 'ERR_DM_INVALID_ARG',
      message: expect.stringContaining('shrinking'),
    });
    await pool.deactivate(dev.name);
    await pool.destroy();
    await thinCheck(pool.loopBacking!.metadataFile);
  });
});

describe('bad input', () => {
  it('is refused with ERR_DM_INVALID_ARG before anything is made', async () => {
    const before = (await dm.list()).length;
    const dir = `${SCRATCH}/bad`;
    for (const [opts, field] of [
      [{ blockSize: '32K' }, 'blockSize'],
      [{ blockSize: '96K' }, 'blockSize'],
      [{ blockSize: '2G' }, 'blockSize'],
      [{ metadataSize: '1M' }, 'metadataSize'],
      [{ metadataSize: '16G' }, 'metadataSize'],
      [{ dataSize: '32K' }, 'dataSize'],
      [{ dataSize: '12Q' }, 'dataSize'],
      [{ lowWaterMark: -1 }, 'lowWaterMark'],
      [{ name: 'a/b' }, 'name'],
      [{ dataSize: '1G', bogus: 1 }, "unknown option 'bogus'"],
    ] as const) {
      await expect(ThinPool.createLoopBacked({ dir, ...opts } as never)).rejects.toMatchObject({
        code: 'ERR_DM_INVALID_ARG',
        message: expect.stringContaining(field),
      });
    }
    const pool = await loopPool('badids');
    for (const id of [-1, 2 ** 24, 1.5]) await expect(pool.createThin(id)).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARG' });
    await expect(pool.createSnapshot(1, 2 ** 24)).rejects.toMatchObject({
      code: 'ERR_DM_INVALID_ARG',
      message: expect.stringContaining('originThinId'),
    });
    await expect(pool.activate(0, { name: `${RUN}x`, size: 1000 })).rejects.toMatchObject({
      code: 'ERR_DM_INVALID_ARG',
      message: expect.stringContaining('multiple of 512'),
    });
    await expect(pool.activate(0, { name: `${RUN}x` } as never)).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARG' });
    await pool.destroy();
    expect((await dm.list()).length).toBe(before);
  });
});
