import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeviceSet, dm, loop, ThinPool, type DeviceSetOptions } from '../../lib/index';
import { RUN, SCRATCH, sparseFile, sweep, sweepSets, thinCheck } from './helpers';

const run = promisify(execFile);
const MiB = 1 << 20;

let n = 0;
/** A fresh small set under SCRATCH; names derive from the root, so sweep() finds them via dm names. */
const fresh = (extra: Partial<DeviceSetOptions> = {}) =>
  DeviceSet.open({ root: `${SCRATCH}/set-${++n}`, baseSize: '64M', dataSize: '1G', metadataSize: '16M', ...extra });

const mnt = (tag: string) => `${SCRATCH}/m-${tag}`;

beforeAll(sweep);
afterAll(sweepSets);

describe('the container-runtime flow', () => {
  it('base, image and container with a file at each layer, read back from each mount', async () => {
    const ds = await fresh();
    await ds.create('image');
    await ds.mount('image', mnt('image'));
    await writeFile(`${mnt('image')}/from-image`, 'image');
    await ds.unmount('image');
    await ds.create('container', { parent: 'image' });
    await ds.mount('container', mnt('container'));
    expect(await readFile(`${mnt('container')}/from-image`, 'utf8')).toBe('image');
    await writeFile(`${mnt('container')}/from-container`, 'container');
    await writeFile(`${mnt('container')}/from-image`, 'changed in container');
    await ds.unmount('container');
    await ds.mount('image', mnt('image'));
    expect(await readFile(`${mnt('image')}/from-image`, 'utf8')).toBe('image'); // copy-on-write
    await expect(readFile(`${mnt('image')}/from-container`)).rejects.toMatchObject({ code: 'ENOENT' });
    await ds.unmount('image');
    expect(ds.list()).toEqual(['container', 'image']);
    expect(ds.has('container')).toBe(true);
    expect(await ds.get('container')).toMatchObject({ id: 'container', parent: 'image', size: 64 * MiB, active: false, deleted: false });
    await ds.remove('container');
    await ds.remove('image');
    expect(ds.list()).toEqual([]);
    expect(ds.has('container')).toBe(false);
    await ds.close();
  });

  it('counts mount references and refuses a second mount point', async () => {
    const ds = await fresh();
    await ds.create('c');
    await ds.mount('c', mnt('ref'));
    await ds.mount('c', mnt('ref'));
    await expect(ds.mount('c', mnt('ref2'))).rejects.toMatchObject({ code: 'EBUSY' });
    await ds.unmount('c');
    expect((await ds.get('c')).mountPoint).toBe(mnt('ref'));
    await writeFile(`${mnt('ref')}/still`, 'mounted');
    await ds.unmount('c');
    expect((await ds.get('c')).active).toBe(false);
    await expect(ds.unmount('c')).rejects.toMatchObject({ code: 'EINVAL' });
    await ds.close();
  });

  it('keeps every device and its data through close and reopen', async () => {
    const ds = await fresh();
    const root = `${SCRATCH}/set-${n}`;
    const payload = randomBytes(3 * MiB);
    for (const id of ['a', 'b', 'c']) await ds.create(id);
    await ds.mount('b', mnt('keep'));
    await writeFile(`${mnt('keep')}/data`, payload);
    await ds.unmount('b');
    const before = await ds.info();
    await ds.close();
    expect((await dm.list()).some((d) => d.name === before.poolName)).toBe(false); // the pool went with close()
    const again = await DeviceSet.open({ root });
    expect(again.list()).toEqual(['a', 'b', 'c']);
    await again.mount('b', mnt('keep'));
    expect((await readFile(`${mnt('keep')}/data`)).equals(payload)).toBe(true);
    await again.unmount('b');
    await again.close();
  });

  it('refuses a second holder with ERR_DM_LOCKED naming the pid, in-process and from another process', async () => {
    const ds = await fresh();
    const root = `${SCRATCH}/set-${n}`;
    await expect(DeviceSet.open({ root })).rejects.toMatchObject({
      code: 'ERR_DM_LOCKED',
      message: expect.stringContaining(`process ${process.pid}`),
    });
    const child = run(process.execPath, [
      '-e',
      `require(${JSON.stringify(`${__dirname}/../../dist/index.js`)}).DeviceSet.open({ root: ${JSON.stringify(root)} }).then(() => process.exit(0), (e) => { console.log(e.code, e.message); process.exit(1); })`,
    ]).catch((e: { stdout: string }) => e.stdout);
    expect(await child).toMatch(new RegExp(`^ERR_DM_LOCKED .*process ${process.pid}`));
    await ds.close();
  });
});

describe('what a killed process leaves behind', () => {
  it('replaces a device made but never loaded, remakes a missing pool node, resumes a suspended device', async () => {
    const ds = await fresh();
    const root = `${SCRATCH}/set-${n}`;
    await ds.create('half');
    await ds.create('frozen');
    await ds.close();
    // A child opens the set, leaves the three leftovers, and is SIGKILLed.
    const lib = JSON.stringify(`${__dirname}/../../dist/index.js`);
    const script = `
      const { DeviceSet, dm } = require(${lib});
      (async () => {
        const ds = await DeviceSet.open({ root: ${JSON.stringify(root)} });
        await ds.mount('frozen', ${JSON.stringify(mnt('frozen'))});
        await dm.suspend(ds.prefix + '-frozen', { skipLockfs: true });
        await dm.create(ds.prefix + '-half');
        require('fs').unlinkSync('/dev/mapper/' + ds.pool.name);
        process.kill(process.pid, 'SIGKILL');
      })();`;
    const died = await run(process.execPath, ['-e', script]).then(
      () => 'exited',
      (e: { signal?: string }) => e.signal,
    );
    expect(died).toBe('SIGKILL');
    const again = await DeviceSet.open({ root });
    const frozen = await dm.info(`${again.prefix}-frozen`);
    expect(frozen.suspended).toBe(false); // resumed by open
    await again.mount('half', mnt('half')); // the table-less device was replaced; the pool node remade
    await writeFile(`${mnt('half')}/ok`, 'ok');
    expect(await readFile(`${mnt('half')}/ok`, 'utf8')).toBe('ok');
    await again.unmount('half');
    await run('umount', ['-l', mnt('frozen')]); // the dead child's mount
    await again.close();
  });
});

describe('sizes and filesystems', () => {
  it('grows a device and its filesystem when created larger than its parent', async () => {
    const ds = await fresh();
    await ds.create('big', { size: '128M' });
    await ds.mount('big', mnt('big'));
    const fs = await statfs(mnt('big'));
    expect(fs.blocks * fs.bsize).toBeGreaterThan(100 * MiB);
    await ds.unmount('big');
    await expect(ds.create('small', { size: '32M' })).rejects.toMatchObject({
      code: 'ERR_DM_INVALID_ARG',
      message: expect.stringContaining('smaller than the parent'),
    });
    await ds.close();
  });

  it('grows the base device when baseSize is raised; later snapshots get the new size', async () => {
    const ds = await fresh();
    const root = `${SCRATCH}/set-${n}`;
    await ds.create('old');
    await ds.close();
    const kept = await DeviceSet.open({ root }); // no baseSize: the base keeps its size (not the 10G default)
    expect((await kept.info()).baseDeviceSize).toBe(64 * MiB);
    await kept.close();
    const grown = await DeviceSet.open({ root, baseSize: '96M' });
    expect((await grown.info()).baseDeviceSize).toBe(96 * MiB);
    await grown.create('new');
    expect((await grown.get('new')).size).toBe(96 * MiB);
    expect((await grown.get('old')).size).toBe(64 * MiB);
    await grown.mount('new', mnt('new'));
    const fs = await statfs(mnt('new'));
    expect(fs.blocks * fs.bsize).toBeGreaterThan(80 * MiB);
    await grown.unmount('new');
    await grown.close();
    await expect(DeviceSet.open({ root, baseSize: '64M' })).rejects.toMatchObject({
      code: 'ERR_DM_INVALID_ARG',
      message: expect.stringContaining('cannot shrink'),
    });
  });

  /** The set's recorded base UUID (read from the superblock) is what blkid -p reads. */
  async function expectUuidAsBlkid(ds: DeviceSet): Promise<void> {
    const set = JSON.parse(await readFile(`${SCRATCH}/set-${n}/metadata/deviceset.json`, 'utf8')) as { baseUuid: string };
    await ds.create('uuid-probe');
    await ds.mount('uuid-probe', mnt('uuid-probe'));
    const { stdout } = await run('blkid', ['-p', '-s', 'UUID', '-o', 'value', (await ds.get('uuid-probe')).path]);
    await ds.unmount('uuid-probe');
    await ds.remove('uuid-probe');
    expect(set.baseUuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(set.baseUuid).toBe(stdout.trim());
  }

  it('passes mkfsArgs to mkfs and mountOptions (plus per-mount options) to mount', async () => {
    const ds = await fresh({ mkfsArgs: ['-L', 'dmlabel'], mountOptions: ['noatime'] });
    await expectUuidAsBlkid(ds);
    await ds.create('opts');
    await ds.mount('opts', mnt('opts'), { options: ['nodiratime'], readOnly: true });
    const line = (await readFile('/proc/self/mounts', 'utf8')).split('\n').find((l) => l.split(' ')[1] === mnt('opts'))!;
    expect(line.split(' ')[3]).toMatch(/^ro,.*noatime/);
    expect(line.split(' ')[3]).toContain('nodiratime');
    await expect(writeFile(`${mnt('opts')}/f`, 'x')).rejects.toMatchObject({ code: 'EROFS' });
    const { stdout } = await run('blkid', ['-p', '-s', 'LABEL', '-o', 'value', (await ds.get('opts')).path]);
    expect(stdout.trim()).toBe('dmlabel');
    await ds.unmount('opts');
    await ds.close();
  });

  it('works with xfs (mounted nouuid, so a snapshot mounts beside its origin)', async () => {
    const ds = await fresh({ fs: 'xfs', baseSize: '320M' });
    expect((await ds.info()).backingFilesystem).toBe('xfs');
    await expectUuidAsBlkid(ds);
    await ds.create('x1');
    await ds.create('x2', { parent: 'x1' });
    await ds.mount('x1', mnt('x1'));
    await ds.mount('x2', mnt('x2')); // same filesystem UUID as x1
    await writeFile(`${mnt('x2')}/f`, 'xfs');
    expect(await readFile(`${mnt('x2')}/f`, 'utf8')).toBe('xfs');
    await ds.unmount('x2');
    await ds.unmount('x1');
    await ds.close();
  });

  it('opens a set written one file per record (as earlier builds did), moving its records into the log', async () => {
    const ds = await fresh();
    const root = `${SCRATCH}/set-${n}`;
    await ds.create('img');
    await ds.create('ctr', { parent: 'img' });
    await ds.mount('ctr', mnt('legacy'));
    await writeFile(`${mnt('legacy')}/f`, 'kept');
    await ds.unmount('ctr');
    const before = ds.records();
    await ds.close({ keep: true });
    // Rewrite the log as the earlier layout: metadata/base.json and metadata/devices/<id>.json.
    const meta = `${root}/metadata`;
    await mkdir(`${meta}/devices`);
    for (const r of before) await writeFile(r.id === '' ? `${meta}/base.json` : `${meta}/devices/${r.id}.json`, JSON.stringify(r, null, 2));
    await rm(`${meta}/devices.log`);
    const again = await DeviceSet.open({ root });
    expect(again.records()).toEqual(expect.arrayContaining(before));
    expect(again.records()).toHaveLength(before.length);
    expect((await readdir(meta)).sort()).toEqual(['devices.log', 'deviceset.json']);
    await again.mount('ctr', mnt('legacy'));
    expect(await readFile(`${mnt('legacy')}/f`, 'utf8')).toBe('kept');
    await again.unmount('ctr');
    await again.remove('ctr');
    await again.close();
  });

  it('detects a base device whose filesystem is not the recorded one', async () => {
    const ds = await fresh();
    const root = `${SCRATCH}/set-${n}`;
    await ds.close();
    const setFile = `${root}/metadata/deviceset.json`;
    const set = JSON.parse(await readFile(setFile, 'utf8'));
    await writeFile(setFile, JSON.stringify({ ...set, baseUuid: '00000000-0000-0000-0000-000000000000' }));
    await expect(DeviceSet.open({ root })).rejects.toMatchObject({ code: 'ERR_DM_CORRUPT', message: expect.stringContaining('UUID') });
    expect((await dm.list()).some((d) => d.name === set.poolName)).toBe(false); // the failed open took its pool down again
    await writeFile(setFile, JSON.stringify(set));
    await (await DeviceSet.open({ root })).close();
  });
});

describe('space', () => {
  it('refuses to create below minFreeSpace with ERR_DM_POOL_FULL saying how to grow', async () => {
    const ds = await fresh({ dataSize: '128M', minFreeSpace: 50 });
    await ds.create('filler', { size: '128M' });
    await ds.mount('filler', mnt('filler'));
    await writeFile(`${mnt('filler')}/fill`, randomBytes(72 * MiB));
    await ds.unmount('filler');
    await expect(ds.create('one-more')).rejects.toMatchObject({
      code: 'ERR_DM_POOL_FULL',
      message: expect.stringMatching(/below the minimum of 50%.*resize/),
    });
    expect(ds.has('one-more')).toBe(false);
    await ds.pool.resize({ dataSize: '512M' });
    await ds.create('one-more');
    await ds.close();
  });

  it('discard gives the blocks of a removed device back to the host file', async () => {
    const ds = await fresh({ discard: true });
    const dataFile = ds.pool.loopBacking!.dataFile;
    await ds.create('d');
    await ds.mount('d', mnt('discard'));
    await writeFile(`${mnt('discard')}/blob`, randomBytes(32 * MiB));
    await ds.unmount('d');
    const full = (await stat(dataFile)).blocks * 512;
    await ds.remove('d');
    const after = (await stat(dataFile)).blocks * 512;
    expect(full - after).toBeGreaterThan(24 * MiB);
    await ds.close();
  });

  it('reports the docker info fields', async () => {
    const ds = await fresh({ deferredRemoval: true, deferredDeletion: true });
    const info = await ds.info();
    expect(info).toMatchObject({
      poolBlockSize: 65536,
      baseDeviceSize: 64 * MiB,
      backingFilesystem: 'ext4',
      dataSpaceTotal: 1024 * MiB,
      metadataSpaceTotal: 16 * MiB,
      thinPoolMinimumFreeSpace: Math.floor((1024 * MiB) / 10),
      deferredRemovalEnabled: true,
      deferredDeletionEnabled: true,
      deferredDeletedDeviceCount: 0,
      udevSyncSupported: false,
      driverVersion: expect.stringMatching(/^4\.\d+\.\d+$/),
      libraryVersion: expect.any(String),
      devices: 0,
    });
    expect(info.poolName).toMatch(/^devmapper-\d+:\d+-\d+-pool$/);
    expect(info.dataFile).toMatch(/^\/dev\/loop\d+$/);
    expect(info.dataLoopFile).toBe(`${SCRATCH}/set-${n}/devicemapper/data`);
    expect(info.dataSpaceUsed + info.dataSpaceAvailable).toBe(info.dataSpaceTotal);
    await ds.close();
  });
});

describe('deferred removal and deletion', () => {
  it('removes and deletes a busy device once it is released', async () => {
    const ds = await fresh({ deferredRemoval: true, deferredDeletion: true, cleanupIntervalMs: 100 });
    await ds.create('busy');
    await ds.mount('busy', mnt('busy'));
    const held = await open(`${mnt('busy')}/held`, 'w'); // keeps the lazily unmounted fs, so the device, busy
    await ds.unmount('busy');
    await ds.remove('busy');
    expect(ds.has('busy')).toBe(false);
    expect((await ds.info()).deferredDeletedDeviceCount).toBe(1);
    const name = `${ds.prefix}-busy`;
    expect((await dm.info(name)).deferredRemove).toBe(true);
    await held.close();
    // The background retry (every 100 ms here) finishes the deletion.
    for (const end = Date.now() + 60_000; Date.now() < end && (await ds.info()).deferredDeletedDeviceCount > 0;)
      await new Promise((r) => setTimeout(r, 100));
    expect((await ds.info()).deferredDeletedDeviceCount).toBe(0);
    await expect(dm.info(name)).rejects.toMatchObject({ code: 'ENXIO' });
    await ds.close();
  });

  it('without deferral, removing an open device fails with EBUSY and keeps it', async () => {
    const ds = await fresh();
    await ds.create('open');
    await ds.mount('open', mnt('open'));
    await expect(ds.remove('open')).rejects.toMatchObject({ code: 'EBUSY', message: expect.stringContaining('unmount') });
    await ds.unmount('open');
    const dev = await ds.get('open');
    await ds.mount('open', mnt('open'));
    const fh = await open(dev.path, 'r'); // a raw opener
    // The device cannot go: unmount fails and the set still counts it mounted.
    await expect(ds.unmount('open')).rejects.toMatchObject({ code: 'EBUSY', ioctl: 'DM_DEV_REMOVE' });
    await expect(ds.remove('open')).rejects.toMatchObject({ code: 'EBUSY' });
    await fh.close();
    expect(ds.has('open')).toBe(true);
    await ds.unmount('open');
    await ds.remove('open');
    await ds.close();
  });
});

describe('bad input', () => {
  it('is refused before any change', async () => {
    const ds = await fresh();
    for (const [call, code, text] of [
      [() => ds.create('bad/id'), 'ERR_DM_INVALID_ARG', 'id'],
      [() => ds.create('base'), 'ERR_DM_INVALID_ARG', 'base device'],
      [() => ds.create('-x'), 'ERR_DM_INVALID_ARG', 'id'],
      [() => ds.create('x'.repeat(120)), 'ERR_DM_INVALID_ARG', 'longer than'],
      [() => ds.create('y', { parent: 'missing' }), 'ENOENT', "no device 'missing'"],
      [() => ds.create('y', { size: '1Q' }), 'ERR_DM_INVALID_ARG', 'size'],
      [() => ds.mount('missing', mnt('x')), 'ENOENT', 'missing'],
      [() => ds.remove('missing'), 'ENOENT', 'missing'],
    ] as const) {
      await expect((call as () => Promise<unknown>)()).rejects.toMatchObject({ code, message: expect.stringContaining(text) });
    }
    await ds.create('y');
    await expect(ds.create('y')).rejects.toMatchObject({ code: 'EEXIST' });
    await expect(DeviceSet.open({ root: `${SCRATCH}/set-x`, fs: 'btrfs' as never })).rejects.toMatchObject({
      code: 'ERR_DM_INVALID_ARG',
      message: expect.stringContaining('fs'),
    });
    await expect(DeviceSet.open({ root: `${SCRATCH}/set-x`, dataDevice: '/dev/loop0' })).rejects.toMatchObject({
      code: 'ERR_DM_INVALID_ARG',
    });
    expect(ds.list()).toEqual(['y']);
    const meta = ds.pool.loopBacking!.metadataFile;
    await ds.close();
    await thinCheck(meta);
  });
});

describe('other pools', () => {
  it('uses an existing pool (poolName) and leaves it in place on close', async () => {
    const pool = await ThinPool.createLoopBacked({
      dir: `${SCRATCH}/shared-pool`,
      name: `${RUN}shared-pool`,
      dataSize: '512M',
      metadataSize: '16M',
    });
    const ds = await DeviceSet.open({ root: `${SCRATCH}/set-byname`, poolName: pool.name, baseSize: '32M' });
    expect(ds.prefix).toBe(`${RUN}shared`);
    await ds.create('other');
    await ds.mount('other', mnt('other'));
    await writeFile(`${mnt('other')}/f`, 'in a shared pool');
    await ds.unmount('other');
    await ds.close();
    expect((await dm.info(pool.name)).activeTable).toBe(true); // not ours to remove
    expect((await pool.activeDevices()).length).toBe(0); // but our devices are deactivated
    const again = await DeviceSet.open({ root: `${SCRATCH}/set-byname`, poolName: pool.name });
    expect(again.list()).toEqual(['other']);
    await again.close();
    await pool.destroy();
  });

  it('makes its pool on given data and metadata devices and removes it on close', async () => {
    const data = await loop.attach(await sparseFile('ds-data', 512 * MiB));
    const meta = await loop.attach(await sparseFile('ds-meta', 16 * MiB));
    const root = `${SCRATCH}/set-direct`;
    const ds = await DeviceSet.open({ root, dataDevice: data.path, metadataDevice: meta.path, baseSize: '32M' });
    const { poolName, dataFile } = await ds.info();
    expect(dataFile).toBe(data.path);
    await ds.create('d1');
    await ds.close();
    await expect(dm.info(poolName)).rejects.toMatchObject({ code: 'ENXIO' });
    const again = await DeviceSet.open({ root, dataDevice: data.path, metadataDevice: meta.path });
    expect(again.list()).toEqual(['d1']); // metadata kept: not zeroed on reopen
    await again.close();
    await loop.detach(data.path);
    await loop.detach(meta.path);
  });
});
