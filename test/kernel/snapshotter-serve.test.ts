// The proxy plugin against the real kernel: `devmapper snapshotter serve` in
// its own process, driven over its socket the way containerd drives a proxy
// snapshotter (the snapshots.v1 gRPC service); errors as containerd's status
// codes, one log line per failed call, and SIGTERM letting a call in flight
// finish before the snapshotter closes.
import type * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dm, Snapshotter } from '../../lib/index';
import { call, listMessages, snapshotsClient, type WireInfo, type WireMount } from '../../lib/snapshotter/proto';
import { SCRATCH, sweep, sweepSets } from './helpers';
import { holdablePool, startProxy, stopProxy, untilWaitingInKernel, type Proxy } from './proxy-kit';
import { mountAll, unmountAll } from './snapshotter-helpers';

const base = join(SCRATCH, 'serve');
const root = join(base, 'root');
const socket = join(base, 'run', 'snapshotter.sock');
const flags = ['--root', root, '--data-size', '1G', '--metadata-size', '16M', '--base-size', '64M'];

let proxy: Proxy | undefined;
let client: grpc.Client | undefined;

beforeAll(sweep);
afterAll(async () => {
  client?.close();
  if (proxy) await stopProxy(proxy);
  await sweepSets();
});

const code = (p: Promise<unknown>) =>
  p.then(
    () => 'ok',
    (e: grpc.ServiceError) => e.code,
  );

const list = async (c: grpc.Client, filters: string[] = []): Promise<WireInfo[]> =>
  (await listMessages(c, { filters })).flatMap((m) => m.info);

/** Mount `mounts` at a fresh directory, run `fn` there, unmount. */
async function inMount<T>(mounts: WireMount[], dir: string, fn: (d: string) => Promise<T>): Promise<T> {
  await mkdir(dir, { recursive: true });
  await mountAll(mounts, dir);
  try {
    return await fn(dir);
  } finally {
    await unmountAll(dir);
  }
}

describe('devmapper snapshotter serve', () => {
  it('serves every method of the snapshots service over its socket, with the real snapshotter behind it', async () => {
    proxy = await startProxy(socket, flags);
    client = snapshotsClient(socket);
    const c = client;
    const prepared = await call<{ mounts: WireMount[] }>(c, 'Prepare', { snapshotter: 'dm', key: 'layer-1', labels: { l: 'one' } });
    expect(prepared.mounts).toHaveLength(1);
    expect(prepared.mounts[0]).toMatchObject({ type: 'ext4', source: expect.stringMatching(/^\/dev\/mapper\/.*-snap-\d+$/) });
    await inMount(prepared.mounts, join(base, 'm1'), (d) => writeFile(join(d, 'hello'), 'from layer 1\n'));
    expect((await call<{ mounts: WireMount[] }>(c, 'Mounts', { key: 'layer-1' })).mounts).toEqual(prepared.mounts);
    await call(c, 'Commit', { name: 'layer-1c', key: 'layer-1', labels: { c: 'yes' } });

    const child = await call<{ mounts: WireMount[] }>(c, 'Prepare', { key: 'work', parent: 'layer-1c' });
    expect(await inMount(child.mounts, join(base, 'm2'), (d) => readFile(join(d, 'hello'), 'utf8'))).toBe('from layer 1\n');
    const view = await call<{ mounts: WireMount[] }>(c, 'View', { key: 'look', parent: 'layer-1c' });
    expect(view.mounts[0]!.options).toContain('ro');

    const stat1 = (await call<{ info: WireInfo }>(c, 'Stat', { key: 'work' })).info;
    expect(stat1).toMatchObject({ name: 'work', parent: 'layer-1c', kind: 'ACTIVE', labels: {} });
    expect(Math.abs(stat1.created_at!.seconds * 1000 - Date.now())).toBeLessThan(3_600_000); // a real clock, not zero
    expect((await call<{ info: WireInfo }>(c, 'Stat', { key: 'layer-1c' })).info).toMatchObject({
      kind: 'COMMITTED',
      labels: { c: 'yes' },
    });
    expect((await call<{ info: WireInfo }>(c, 'Stat', { key: 'look' })).info.kind).toBe('VIEW');

    const updated = await call<{ info: WireInfo }>(c, 'Update', {
      info: { name: 'work', labels: { 'containerd.io/gc.root': 'x', ignored: 'y' } },
      update_mask: { paths: ['labels.containerd.io/gc.root'] },
    });
    expect(updated.info.labels).toEqual({ 'containerd.io/gc.root': 'x' });

    expect((await list(c)).map((i) => i.name).sort()).toEqual(['layer-1c', 'look', 'work']);
    expect((await list(c, ['kind==committed'])).map((i) => i.name)).toEqual(['layer-1c']);
    expect((await list(c, ['parent==layer-1c,kind==view', 'name==work'])).map((i) => i.name).sort()).toEqual(['look', 'work']);
    expect((await list(c, ['labels."containerd.io/gc.root"==x'])).map((i) => i.name)).toEqual(['work']);

    const usage = await call<{ size: number; inodes: number }>(c, 'Usage', { key: 'layer-1c' });
    expect(usage.size).toBeGreaterThan(0);
    expect(usage.size % 65536).toBe(0); // whole pool blocks, as the kernel maps them

    // containerd's errdefs, and one line each on the plugin's standard error.
    expect(await code(call(c, 'Stat', { key: 'nothing' }))).toBe(status.NOT_FOUND);
    expect(await code(call(c, 'Prepare', { key: 'work', parent: 'layer-1c' }))).toBe(status.ALREADY_EXISTS);
    expect(await code(call(c, 'Remove', { key: 'layer-1c' }))).toBe(status.FAILED_PRECONDITION);
    expect(await code(call(c, 'Commit', { name: 'v2', key: 'look' }))).toBe(status.FAILED_PRECONDITION);
    expect(await code(call(c, 'Prepare', { key: '' }))).toBe(status.INVALID_ARGUMENT);
    const logged = await proxy.linesOf('devmapper snapshotter: ', 5);
    expect(logged).toHaveLength(5);
    expect(logged.join('\n')).toMatch(/Stat key="nothing": ERR_DM_NOT_FOUND: snapshot 'nothing' does not exist/);

    for (const key of ['look', 'work', 'layer-1c']) await call(c, 'Remove', { key });
    expect(await list(c)).toEqual([]);
    await call(c, 'Cleanup', {});
  });

  it('on SIGTERM finishes the call in flight, closes the snapshotter and removes its socket', async () => {
    client?.close();
    if (proxy) expect(await stopProxy(proxy)).toBe(0);
    // A pool whose data device the test can suspend: a Prepare then waits in its mkfs for the data I/O.
    const pool = await holdablePool('serve');
    const data = pool.data;
    const held = join(base, 'held');
    const p = await startProxy(socket, ['--root', held, ...pool.flags, '--base-size', '64M']);
    proxy = p;
    const c = (client = snapshotsClient(socket));
    await dm.suspend(data.name);
    let resumed = false;
    try {
      const inFlight = call<{ mounts: WireMount[] }>(c, 'Prepare', { key: 'late' });
      // The call is in the plugin once the plugin (or its mkfs) waits in the kernel for the
      // suspended data device: the pool's commit flushes it, mkfs writes to it.
      await untilWaitingInKernel(p.child.pid!, p.output);
      p.child.kill('SIGTERM');
      // It cannot exit while the call waits for the suspended data device.
      const early = await Promise.race([p.exited, new Promise((r) => setTimeout(() => r('running'), 500))]);
      expect(early).toBe('running');
      await dm.resume(data.name);
      resumed = true;
      expect((await inFlight).mounts).toHaveLength(1);
      expect(await p.exited).toBe(0);
    } finally {
      if (!resumed) await dm.resume(data.name);
    }
    proxy = undefined;
    expect(p.output()).toContain('devmapper snapshotter: stopped');
    await expect(stat(socket)).rejects.toMatchObject({ code: 'ENOENT' });
    // The lock is free, and the snapshot made in flight is there.
    const again = await Snapshotter.open({ root: held, dataDevice: data.path, metadataDevice: pool.metadataPath });
    try {
      expect((await again.stat('late')).kind).toBe('active');
      await again.remove('late');
    } finally {
      await again.close();
    }
  });

  it('refuses bad flags with exit code 2 and a message, before touching anything', async () => {
    const bad = await startProxy(join(base, 'bad.sock'), ['--root', join(base, 'bad'), '--base-size', 'lots']).catch((e: Error) => e);
    expect(String(bad)).toMatch(/exited \(2\)[\s\S]*invalid baseSize/);
    await expect(stat(join(base, 'bad'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
