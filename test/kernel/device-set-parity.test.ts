// Docker's and containerd's own test intents, run against DeviceSet: the
// cases a container runtime meets on its first day.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readlink, stat, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeviceSet, dm, type DeviceSetOptions } from '../../lib/index';
import { SCRATCH, sweep, sweepSets, thinDump } from './helpers';

const run = async (cmd: string, args: string[]) =>
  (await promisify(execFile)(cmd, args, { env: { ...process.env, DM_DISABLE_UDEV: '1' } })).stdout.trim();

const MiB = 1 << 20;
let n = 0;
const rootOf = (k: number) => `${SCRATCH}/parity-${k}`;
const fresh = (extra: Partial<DeviceSetOptions> = {}) =>
  DeviceSet.open({ root: rootOf(++n), baseSize: '64M', dataSize: '1G', metadataSize: '16M', ...extra });
const mnt = (tag: string) => `${SCRATCH}/pm-${tag}`;

const children: ChildProcess[] = [];
/** A process in a new mount namespace (as runc starts every container), holding a copy of every mount. */
async function inNewNamespace(script: string, mountPoint: string, o: { fd?: number; file?: string } = {}): Promise<ChildProcess> {
  const child = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script], { stdio: 'ignore' });
  children.push(child);
  // The fd must be the file itself (same device and inode): before the shell runs, fd `o.fd` of the
  // forked process may be anything. (Compared by identity: its path as /proc shows it across mount
  // namespaces is not the same on every kernel.)
  const want = o.file === undefined ? undefined : await stat(o.file);
  const end = Date.now() + 120_000;
  // Wait for the event, not a time: the child's namespace exists and holds the copy.
  for (;;) {
    if (child.exitCode !== null) throw new Error(`unshare exited ${child.exitCode}`);
    const mine = await readFile('/proc/self/mountinfo', 'utf8');
    const theirs = await readFile(`/proc/${child.pid}/mountinfo`, 'utf8').catch(() => mine);
    const held = o.fd === undefined ? undefined : await stat(`/proc/${child.pid}/fd/${o.fd}`).catch(() => undefined);
    const fdOpen = o.fd === undefined || (held !== undefined && want !== undefined && held.dev === want.dev && held.ino === want.ino);
    if (theirs !== mine && theirs.includes(` ${mountPoint} `) && fdOpen) return child;
    if (Date.now() > end) {
      const link = o.fd === undefined ? '' : await readlink(`/proc/${child.pid}/fd/${o.fd}`).catch((e: Error) => e.message);
      throw new Error(
        `the child's namespace never held ${mountPoint}${o.fd === undefined ? '' : ` with fd ${o.fd} on ${o.file} (it is: ${link})`}`,
      );
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}
async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await gone;
}

beforeAll(sweep);
afterAll(async () => {
  for (const c of children) await kill(c);
  await run('umount', ['-l', `${SCRATCH}/small`]).catch(() => undefined);
  await sweepSets();
});

describe('unmount when another mount namespace holds a copy of the mount (moby#34573)', () => {
  it('unmounts and deactivates; the mount point goes, and the copy with it', async () => {
    const ds = await fresh();
    await ds.create('x');
    await ds.mount('x', mnt('ns'));
    await writeFile(`${mnt('ns')}/f`, 'x');
    const child = await inNewNamespace('exec sleep 1000', mnt('ns'));
    await ds.unmount('x'); // EBUSY from DM_DEV_REMOVE before the fix
    expect(await dm.info(`${ds.prefix}-x`).catch((e: { code: string }) => e.code)).toBe('ENXIO');
    expect(existsSync(mnt('ns'))).toBe(false);
    expect(await readFile(`/proc/${child.pid}/mountinfo`, 'utf8')).not.toContain(` ${mnt('ns')} `);
    expect((await ds.get('x')).mountPoint).toBeUndefined();
    // Its data is intact, and it mounts again.
    await ds.mount('x', mnt('ns'));
    expect(await readFile(`${mnt('ns')}/f`, 'utf8')).toBe('x');
    await ds.unmount('x');
    await kill(child);
    await ds.close();
  });

  it('a file held open in the other namespace fails the unmount and leaves the record as it was; a second unmount finishes', async () => {
    const ds = await fresh();
    await ds.create('held');
    await ds.mount('held', mnt('held'));
    await writeFile(`${mnt('held')}/f`, 'held');
    const child = await inNewNamespace(`exec 3<${mnt('held')}/f; exec sleep 1000`, mnt('held'), { fd: 3, file: `${mnt('held')}/f` });
    await expect(ds.unmount('held')).rejects.toMatchObject({ code: 'EBUSY', ioctl: 'DM_DEV_REMOVE' });
    // Record and kernel agree: still counted as mounted, the device still active.
    expect((await ds.get('held')).mountPoint).toBe(mnt('held'));
    expect((await dm.info(`${ds.prefix}-held`)).openCount).toBe(1);
    await expect(ds.remove('held')).rejects.toMatchObject({ code: 'EBUSY' });
    await kill(child);
    await ds.unmount('held');
    expect((await ds.get('held')).active).toBe(false);
    await expect(ds.unmount('held')).rejects.toMatchObject({ code: 'EINVAL' });
    await ds.remove('held');
    expect(ds.has('held')).toBe(false);
    await ds.close();
  });
});

describe('a larger dataSize / metadataSize on reopen grows the pool (moby TestDevmapperIncreaseLoopBackSize)', () => {
  it('grows a pool that is down, grows a live one, refuses to shrink; data intact', async () => {
    const ds = await fresh();
    const root = rootOf(n);
    await ds.create('a');
    await ds.mount('a', mnt('grow'));
    const payload = randomBytes(2 * MiB);
    await writeFile(`${mnt('grow')}/data`, payload);
    await ds.unmount('a');
    await ds.close(); // the pool goes down with it

    const grown = await DeviceSet.open({ root, dataSize: '2G', metadataSize: '32M' });
    const info = await grown.info();
    expect(info.dataSpaceTotal).toBe(2 * 1024 * MiB);
    expect(info.metadataSpaceTotal).toBe(32 * MiB);
    expect((await stat(`${root}/devicemapper/data`)).size).toBe(2 * 1024 * MiB);
    expect(Number(await run('blockdev', ['--getsize64', info.dataFile]))).toBe(2 * 1024 * MiB);
    expect(Number(await run('blockdev', ['--getsize64', info.metadataFile]))).toBe(32 * MiB);
    await grown.close({ keep: true }); // the pool stays live

    const live = await DeviceSet.open({ root, dataSize: '3G' });
    const table = await run('dmsetup', ['table', live.pool.name]);
    expect(table.split(' ')[1]).toBe(String((3 * 1024 * MiB) / 512));
    expect((await live.info()).dataSpaceTotal).toBe(3 * 1024 * MiB);
    await live.mount('a', mnt('grow'));
    expect((await readFile(`${mnt('grow')}/data`)).equals(payload)).toBe(true);
    await live.unmount('a');
    await live.close({ keep: true });

    for (const smaller of [{ dataSize: '1G' }, { metadataSize: '16M' }]) {
      await expect(DeviceSet.open({ root, ...smaller })).rejects.toMatchObject({
        code: 'ERR_DM_INVALID_ARG',
        message: expect.stringContaining('cannot shrink'),
      });
    }
    expect((await stat(`${root}/devicemapper/data`)).size).toBe(3 * 1024 * MiB);
    const same = await DeviceSet.open({ root });
    expect((await same.info()).dataSpaceTotal).toBe(3 * 1024 * MiB);
    await same.close();
  });
});

describe('available space is capped by the filesystem under the sparse loop files (Docker)', () => {
  it('reports what the host filesystem can still hold, for data and metadata', async () => {
    const small = `${SCRATCH}/small`;
    await mkdir(small, { recursive: true });
    await run('mount', ['-t', 'tmpfs', '-o', 'size=256M', 'tmpfs', small]);
    const ds = await DeviceSet.open({ root: `${small}/set`, baseSize: '64M', dataSize: '1G', metadataSize: '512M' });
    const info = await ds.info();
    const u = await ds.pool.usage();
    // Free bytes as coreutils sees them: free blocks × block size.
    const [free, bsize] = (await run('stat', ['-f', '-c', '%f %S', small])).split(' ').map(Number) as [number, number];
    const hostFree = free * bsize;
    expect(hostFree).toBeLessThan(256 * MiB);
    expect(info.dataSpaceAvailable).toBe(hostFree);
    expect(info.dataSpaceAvailable).toBeLessThan(info.dataSpaceTotal - info.dataSpaceUsed);
    expect(info.metadataSpaceAvailable).toBe(hostFree);
    expect(info.metadataSpaceAvailable).toBeLessThan(info.metadataSpaceTotal - info.metadataSpaceUsed);
    expect(u.data.hostFree).toBe(hostFree);
    await ds.close();
    await run('umount', [small]);
  });
});

describe('per-device usage (moby GetDeviceStatus, containerd Usage)', () => {
  it('reports mapped bytes from the thin status, active or not, as thin_dump counts them', async () => {
    const ds = await fresh();
    const root = rootOf(n);
    await ds.create('u');
    await ds.mount('u', mnt('u'));
    const fresh0 = await ds.usage('u'); // mapped blocks shared with the base
    await writeFile(`${mnt('u')}/data`, randomBytes(8 * MiB));
    await run('sync', []);
    const mounted = await ds.usage('u');
    expect(mounted.mappedBytes - fresh0.mappedBytes).toBeGreaterThanOrEqual(8 * MiB);
    await ds.unmount('u');
    const idle = await ds.usage('u'); // a short read-only activation
    expect(idle.mappedBytes).toBeGreaterThanOrEqual(mounted.mappedBytes);
    expect(idle.highestMappedSector).toBeGreaterThan(0);
    expect((await dm.list()).filter((d) => d.name.includes('-usage-'))).toEqual([]);
    expect(await ds.pool.thinUsage(idle.thinId)).toMatchObject({ source: 'activation', mappedSectors: idle.mappedSectors });
    await expect(ds.pool.thinUsage(4242)).rejects.toMatchObject({ code: 'ERR_DM_NOT_FOUND' });
    await expect(ds.usage('nope')).rejects.toMatchObject({ code: 'ENOENT' });
    const blockSectors = ds.pool.blockSize / 512;
    await ds.close();
    // thin_dump's count, on the pool's metadata now that it is down.
    const mapped = (await thinDump(`${root}/devicemapper/metadata`)).get(idle.thinId);
    expect(mapped! * blockSectors).toBe(idle.mappedSectors);
  });
});

describe("XFS's ENOSPC retries (dm.xfs_nospace_max_retries)", () => {
  const retries = async (ds: DeviceSet, id: string) =>
    (await readFile(`/sys/fs/xfs/dm-${(await dm.info(`${ds.prefix}-${id}`)).minor}/error/metadata/ENOSPC/max_retries`, 'utf8')).trim();

  it('is set on each device the set mounts, and only for xfs', async () => {
    const ds = await fresh({ fs: 'xfs', baseSize: '320M', xfsNospaceMaxRetries: 0 });
    await ds.create('x');
    await ds.mount('x', mnt('xfs'));
    expect(await retries(ds, 'x')).toBe('0');
    await ds.unmount('x');
    await ds.close();
    const plain = await DeviceSet.open({ root: rootOf(n) });
    await plain.mount('x', mnt('xfs'));
    expect(await retries(plain, 'x')).toBe('-1'); // the kernel's default: for ever
    await plain.unmount('x');
    await plain.close();
    await expect(fresh({ xfsNospaceMaxRetries: 3 })).rejects.toMatchObject({
      code: 'ERR_DM_INVALID_ARG',
      message: expect.stringContaining('ext4'),
    });
    await expect(fresh({ fs: 'xfs', xfsNospaceMaxRetries: -1 })).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARG' });
  });
});
