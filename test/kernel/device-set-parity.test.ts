// Docker's and containerd's own test intents, run against DeviceSet: the
// cases a container runtime meets on its first day.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeviceSet, dm, type DeviceSetOptions } from '../../lib/index';
import { SCRATCH, sweep } from './helpers';

const MiB = 1 << 20;
let n = 0;
const rootOf = (k: number) => `${SCRATCH}/parity-${k}`;
const fresh = (extra: Partial<DeviceSetOptions> = {}) =>
  DeviceSet.open({ root: rootOf(++n), baseSize: '64M', dataSize: '1G', metadataSize: '16M', ...extra });
const mnt = (tag: string) => `${SCRATCH}/pm-${tag}`;

const children: ChildProcess[] = [];
/** A process in a new mount namespace (as runc starts every container), holding a copy of every mount. */
async function inNewNamespace(script: string, mountPoint: string, o: { fd?: number } = {}): Promise<ChildProcess> {
  const child = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script], { stdio: 'ignore' });
  children.push(child);
  // Wait for the event, not a time: the child's namespace exists and holds the copy.
  for (;;) {
    if (child.exitCode !== null) throw new Error(`unshare exited ${child.exitCode}`);
    const mine = await readFile('/proc/self/mountinfo', 'utf8');
    const theirs = await readFile(`/proc/${child.pid}/mountinfo`, 'utf8').catch(() => mine);
    const fdOpen = o.fd === undefined || existsSync(`/proc/${child.pid}/fd/${o.fd}`);
    if (theirs !== mine && theirs.includes(` ${mountPoint} `) && fdOpen) return child;
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
  for (const d of await dm.list()) if (d.name.startsWith('devmapper-') && !d.name.endsWith('-pool')) await dm.remove(d.name).catch(() => undefined);
  for (const d of await dm.list()) if (d.name.startsWith('devmapper-')) await dm.remove(d.name).catch(() => undefined);
  await sweep();
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
    const child = await inNewNamespace(`exec 3<${mnt('held')}/f; exec sleep 1000`, mnt('held'), { fd: 3 });
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
