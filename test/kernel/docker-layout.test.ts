// DeviceSet.open({ root, layout: 'docker' }) on a store built by hand the way
// Docker's devicemapper driver left one: a loop-backed pool named
// docker-MAJ:MIN-INO-pool (of root), a base thin device with ext4, an image
// snapshot and a container snapshot of it, one JSON file per device with
// moby's field names, deviceset-metadata and transaction-metadata.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { native } from '../../lib/binding';
import { DeviceSet, dm, loop } from '../../lib/index';
import { SCRATCH, sweep, writeBlock } from './helpers';

const run = promisify(execFile);
const MiB = 1 << 20;
const SIZE = 64 * MiB;
const IMAGE = 'a1'.repeat(32);
const CONTAINER = 'c2'.repeat(32);
/** Docker deleted it with deferred deletion on: its file says deleted, its thin device is still in the pool. */
const DELETED = 'd4'.repeat(32);
/** Created in a transaction the pool never committed: Docker's start-up rollback would delete it. */
const PENDING = 'e3'.repeat(32);

const prefixes: string[] = [];

/** moby's device prefix, worked out here on its own: its major() and minor() of stat(root).st_dev. */
async function mobyPrefix(root: string): Promise<string> {
  const { dev, ino } = await stat(root, { bigint: true });
  return `docker-${(dev >> 8n) & 0xfffn}:${(dev & 0xffn) | ((dev >> 12n) & 0xfff00n)}-${ino}`;
}

interface Fixture {
  root: string;
  prefix: string;
  pool: string;
}

const mnt = (tag: string) => `${SCRATCH}/mnt-${tag}`;

/**
 * A Docker store under SCRATCH/tag. `live`: the pool stays up afterwards
 * (Docker still running) with the container mounted read-write by "Docker"
 * at root/mnt/<hash>; otherwise it is torn down as after Docker stopped.
 */
async function dockerStore(tag: string, { live = false, fs = 'ext4' as 'ext4' | 'xfs' } = {}): Promise<Fixture> {
  const size = fs === 'xfs' ? 320 * MiB : SIZE; // mkfs.xfs wants 300M at least
  const root = `${SCRATCH}/${tag}`;
  for (const d of ['devicemapper', 'metadata', 'mnt']) await mkdir(join(root, d), { recursive: true });
  const data = join(root, 'devicemapper', 'data');
  const meta = join(root, 'devicemapper', 'metadata');
  await writeFile(data, '');
  await run('truncate', ['-s', '512M', data]);
  await writeFile(meta, '');
  await run('truncate', ['-s', '16M', meta]);
  await writeBlock(meta, 0, Buffer.alloc(4096));
  const prefix = await mobyPrefix(root);
  prefixes.push(prefix);
  const pool = `${prefix}-pool`;
  const dataLoop = await loop.attach(data);
  const metaLoop = await loop.attach(meta);
  // moby's CreatePool table: 64K blocks, low water mark 32768, skip_block_zeroing.
  const poolParams = `${metaLoop.path} ${dataLoop.path} 128 32768 1 skip_block_zeroing`;
  const p = await dm.create(pool, { table: [{ start: 0, length: 512 * 2048, type: 'thin-pool', params: poolParams }] });
  const activate = (id: number, hash: string) =>
    dm.create(`${prefix}-${hash}`, { table: [{ start: 0, length: size / 512, type: 'thin', params: `${p.major}:${p.minor} ${id}` }] });
  const writeIn = async (dev: string, files: Record<string, string>, keepMounted = '') => {
    const at = keepMounted || mnt(`fixture-${tag}`);
    await mkdir(at, { recursive: true });
    await native.mount(dev, at, fs, 0, fs === 'xfs' ? 'nouuid' : '');
    for (const [f, text] of Object.entries(files)) await writeFile(join(at, f), text);
    if (!keepMounted) await native.umount2(at, 0);
  };
  const commit = (from: number, to: number) => dm.message(pool, `set_transaction_id ${from} ${to}`);
  const record = (hash: string, r: object) => writeFile(join(root, 'metadata', hash), JSON.stringify(r));

  await dm.message(pool, 'create_thin 1');
  const base = await activate(1, 'base');
  if (fs === 'xfs') await run('mkfs.xfs', ['-q', '-f', base.path]);
  else await run('mkfs.ext4', ['-q', '-E', 'nodiscard,lazy_itable_init=0,lazy_journal_init=0', base.path]);
  await writeIn(base.path, { 'base-file': 'from base' });
  const uuid = (await run('blkid', ['-p', '-s', 'UUID', '-o', 'value', base.path])).stdout.trim();
  await dm.remove(base.name);
  await record('base', { device_id: 1, size, transaction_id: 1, initialized: true, deleted: false });
  await commit(0, 1);

  await dm.message(pool, 'create_snap 2 1');
  const image = await activate(2, IMAGE);
  await writeIn(image.path, { 'image-file': 'from image' });
  await dm.remove(image.name);
  await record(IMAGE, { device_id: 2, size, transaction_id: 2, initialized: false, deleted: false });
  await commit(1, 2);

  await dm.message(pool, 'create_snap 3 2');
  await dm.message(pool, 'create_thin 5');
  await record(CONTAINER, { device_id: 3, size, transaction_id: 3, initialized: false, deleted: false });
  await record(DELETED, { device_id: 5, size, transaction_id: 3, initialized: false, deleted: true });
  await commit(2, 3);
  const container = await activate(3, CONTAINER);
  const dockerMount = live ? join(root, 'mnt', CONTAINER) : '';
  await writeIn(container.path, { 'container-file': 'from container', 'image-file': 'changed by container' }, dockerMount);
  if (!live) await dm.remove(container.name);

  // Docker writes the device's file inside the transaction, and commits last.
  await writeFile(
    join(root, 'metadata', 'transaction-metadata'),
    JSON.stringify({ open_transaction_id: 4, device_hash: PENDING, device_id: 4 }),
  );
  await dm.message(pool, 'create_snap 4 2');
  await record(PENDING, { device_id: 4, size, transaction_id: 4, initialized: false, deleted: false });
  const set = { next_device_id: 5, BaseDeviceUUID: uuid, BaseDeviceFilesystem: fs };
  await writeFile(join(root, 'metadata', 'deviceset-metadata'), JSON.stringify(set));

  if (!live) {
    await dm.remove(pool);
    await loop.detach(dataLoop.path);
    await loop.detach(metaLoop.path);
  }
  return { root, prefix, pool };
}

/** Every entry under `dir` with its size, mode and times (a write anywhere changes one), and a digest of each small file. */
async function snapshot(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await readdir(dir, { recursive: true })).sort()) {
    const path = join(dir, name);
    const st = await stat(path);
    const digest =
      st.isFile() && st.size <= 16 * MiB
        ? createHash('sha256')
            .update(await readFile(path))
            .digest('hex')
        : '';
    out.push(`${name} ${st.mode} ${st.size} ${st.mtimeMs} ${st.ctimeMs} ${digest}`);
  }
  return out;
}

const ours = async (prefix: string) =>
  (await dm.list())
    .map((d) => d.name)
    .filter((n) => n.startsWith(`${prefix}-`))
    .sort();

beforeAll(sweep);
afterAll(async () => {
  for (const m of (await readFile('/proc/self/mounts', 'utf8')).split('\n').map((l) => l.split(' ')[1] ?? '')) {
    if (m.startsWith(SCRATCH)) await native.umount2(m, native.sysConstants.MNT_DETACH).catch(() => undefined);
  }
  for (const prefix of prefixes) {
    for (const n of await ours(prefix)) if (!n.endsWith('-pool')) await dm.remove(n).catch(() => undefined);
    for (const n of await ours(prefix)) await dm.remove(n).catch(() => undefined);
  }
  await sweep();
});

describe('a Docker store whose pool is down (Docker stopped)', () => {
  it('lists, mounts read-only and reads back every device; refuses changes; writes nothing under root; leaves nothing behind', async () => {
    const fx = await dockerStore('stopped');
    expect(await ours(fx.prefix)).toEqual([]);
    const before = await snapshot(fx.root);

    const ds = await DeviceSet.open({ root: fx.root, layout: 'docker' });
    expect(ds.pool.name).toBe(fx.pool);
    expect((await dm.table(fx.pool))[0]!.params).toMatch(/ 128 32768 2 skip_block_zeroing read_only\s*$/);
    // Deleted, and rolled back (transaction 4 never reached the pool): not listed.
    expect(ds.list()).toEqual([IMAGE, CONTAINER].sort());
    expect(ds.has(DELETED)).toBe(false);
    expect(ds.has(PENDING)).toBe(false);
    await expect(ds.get(PENDING)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await ds.get(CONTAINER)).toMatchObject({
      id: CONTAINER,
      parent: null,
      thinId: 3,
      size: SIZE,
      path: `/dev/mapper/${fx.prefix}-${CONTAINER}`,
      active: false,
    });

    await ds.mount(IMAGE, mnt('image'));
    await ds.mount(CONTAINER, mnt('container'));
    expect(await readFile(`${mnt('image')}/base-file`, 'utf8')).toBe('from base');
    expect(await readFile(`${mnt('image')}/image-file`, 'utf8')).toBe('from image');
    expect(await readFile(`${mnt('container')}/image-file`, 'utf8')).toBe('changed by container');
    expect(await readFile(`${mnt('container')}/container-file`, 'utf8')).toBe('from container');
    expect((await dm.info(`${fx.prefix}-${IMAGE}`)).readOnly).toBe(true);
    await expect(writeFile(`${mnt('container')}/new`, 'x')).rejects.toMatchObject({ code: 'EROFS' });
    for (const l of await loop.list()) if (l.backingFile.startsWith(fx.root)) expect(l.readOnly).toBe(true);

    await expect(ds.create('new')).rejects.toMatchObject({ code: 'EROFS', message: expect.stringContaining('read-only') });
    await expect(ds.remove(IMAGE)).rejects.toMatchObject({ code: 'EROFS' });
    await expect(ds.cleanup()).rejects.toMatchObject({ code: 'EROFS' });
    await expect(ds.mount(IMAGE, mnt('rw'), { readOnly: false })).rejects.toMatchObject({ code: 'EROFS' });
    await expect(DeviceSet.open({ root: fx.root, layout: 'docker' })).rejects.toMatchObject({ code: 'ERR_DM_LOCKED' });
    expect(await ds.info()).toMatchObject({
      poolName: fx.pool,
      poolBlockSize: 64 * 1024,
      baseDeviceSize: SIZE,
      backingFilesystem: 'ext4',
      dataLoopFile: join(fx.root, 'devicemapper', 'data'),
      devices: 2,
    });

    await ds.unmount(IMAGE);
    expect((await ds.get(IMAGE)).active).toBe(false);
    await ds.close(); // the container still mounted: close unmounts it
    expect(await ours(fx.prefix)).toEqual([]);
    expect((await loop.list()).filter((l) => l.backingFile.startsWith(fx.root))).toEqual([]);
    expect(await snapshot(fx.root)).toEqual(before);

    // Opened again after close: the lock went with it, and the data is all still there.
    const again = await DeviceSet.open({ root: fx.root, layout: 'docker' });
    await again.mount(CONTAINER, mnt('again'));
    expect(await readFile(`${mnt('again')}/container-file`, 'utf8')).toBe('from container');
    await again.close();
    expect(await ours(fx.prefix)).toEqual([]);
    expect(await snapshot(fx.root)).toEqual(before);
  });

  it("the library's own layout refuses the store and writes nothing", async () => {
    const fx = await dockerStore('native');
    const before = await snapshot(fx.root);
    const refused = { code: 'ERR_DM_INVALID_ARG', message: expect.stringContaining("layout: 'docker'") };
    await expect(DeviceSet.open({ root: fx.root })).rejects.toMatchObject(refused);
    expect(await snapshot(fx.root)).toEqual(before);
    expect(await ours(fx.prefix)).toEqual([]);
  });
});

describe('a Docker store whose pool is live (Docker still running)', () => {
  it("uses Docker's pool, leaves Docker's devices and mounts as they were, writes nothing into root/metadata", async () => {
    const fx = await dockerStore('live', { live: true });
    const dockerMount = join(fx.root, 'mnt', CONTAINER);
    const poolTable = await dm.table(fx.pool);
    const devices = await ours(fx.prefix);
    expect(devices).toEqual([`${fx.prefix}-${CONTAINER}`, fx.pool].sort());
    const before = await snapshot(join(fx.root, 'metadata'));

    const ds = await DeviceSet.open({ root: fx.root, layout: 'docker' });
    expect(ds.pool.name).toBe(fx.pool);
    expect(ds.list()).toEqual([IMAGE, CONTAINER].sort());
    await ds.mount(IMAGE, mnt('live-image'));
    expect(await readFile(`${mnt('live-image')}/image-file`, 'utf8')).toBe('from image');
    expect((await dm.info(`${fx.prefix}-${IMAGE}`)).readOnly).toBe(true);
    await ds.close();

    expect(await ours(fx.prefix)).toEqual(devices); // the image device went; Docker's pool and container stayed
    expect(await dm.table(fx.pool)).toEqual(poolTable);
    expect(await readFile(join(dockerMount, 'container-file'), 'utf8')).toBe('from container'); // Docker's mount untouched
    expect(await snapshot(join(fx.root, 'metadata'))).toEqual(before);
  });
});

describe('a Docker store on xfs', () => {
  it('mounts two snapshots of one xfs at once (nouuid), read-only', async () => {
    const fx = await dockerStore('xfs', { fs: 'xfs' });
    const before = await snapshot(fx.root);
    const ds = await DeviceSet.open({ root: fx.root, layout: 'docker' });
    expect((await ds.info()).backingFilesystem).toBe('xfs');
    await ds.mount(IMAGE, mnt('xfs-image'));
    await ds.mount(CONTAINER, mnt('xfs-container'));
    expect(await readFile(`${mnt('xfs-image')}/image-file`, 'utf8')).toBe('from image');
    expect(await readFile(`${mnt('xfs-container')}/image-file`, 'utf8')).toBe('changed by container');
    await expect(writeFile(`${mnt('xfs-image')}/new`, 'x')).rejects.toMatchObject({ code: 'EROFS' });
    await ds.close();
    expect(await ours(fx.prefix)).toEqual([]);
    expect(await snapshot(fx.root)).toEqual(before);
  });
});
