// The proxy plugin's wire mapping, against a stand-in Snapshotter (the real
// one, with containerd, runs in test/kernel): what each method sends and
// receives, containerd's status codes for DmError codes, List's batches, one
// log line per failed call, and close letting a call in flight finish.
import * as grpc from '@grpc/grpc-js';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DmError, type DmErrorCode } from '../../lib/errors';
import { call, listMessages, snapshotsClient, type WireInfo } from '../../lib/snapshotter/proto';
import { serveSnapshotter, type SnapshotterServer } from '../../lib/snapshotter/serve';
import type { Snapshotter } from '../../lib/snapshotter/snapshotter';
import type { SnapshotInfo } from '../../lib/snapshotter/types';

const created = new Date('2026-01-02T03:04:05.678Z');
const info = (name: string, kind: SnapshotInfo['kind'] = 'committed'): SnapshotInfo => ({
  name,
  parent: '',
  kind,
  labels: { a: '1' },
  created,
  updated: created,
});

/** Records every call; `fail` makes the next call throw. */
function fakeSnapshotter() {
  const calls: unknown[][] = [];
  let fail: unknown;
  let gate: Promise<void> | undefined;
  const rec =
    <T>(name: string, result: (...args: unknown[]) => T) =>
    async (...args: unknown[]) => {
      calls.push([name, ...args]);
      if (gate) await gate;
      if (fail) {
        const e = fail;
        fail = undefined;
        throw e;
      }
      return result(...args);
    };
  const mounts = [{ type: 'ext4', source: '/dev/mapper/x-snap-1', options: ['ro'] }];
  const sn = {
    prepare: rec('prepare', () => mounts),
    view: rec('view', () => mounts),
    mounts: rec('mounts', () => mounts),
    commit: rec('commit', () => undefined),
    remove: rec('remove', () => undefined),
    stat: rec('stat', (key) => info(key as string, 'active')),
    update: rec('update', (i) => ({ ...info((i as SnapshotInfo).name), labels: (i as SnapshotInfo).labels })),
    usage: rec('usage', () => ({ size: 2 ** 40 + 3, inodes: 0 })),
    cleanup: rec('cleanup', () => undefined),
    walk: rec('walk', async (fn, ...filters) => {
      for (let i = 0; i < 250; i++) await (fn as (i: SnapshotInfo) => void)(info(`s${i}`));
      return filters;
    }),
  };
  return {
    sn: sn as unknown as Snapshotter,
    calls,
    failNext: (e: unknown) => (fail = e),
    hold: () => {
      let release!: () => void;
      gate = new Promise((r) => (release = r));
      return () => {
        gate = undefined;
        release();
      };
    },
  };
}

let dir: string;
let server: SnapshotterServer;
let client: grpc.Client;
let fake: ReturnType<typeof fakeSnapshotter>;
let logged: string[];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dm-serve-'));
  fake = fakeSnapshotter();
  logged = [];
  server = await serveSnapshotter(fake.sn, { socket: join(dir, 'run', 'sn.sock'), log: (l) => logged.push(l) });
  client = snapshotsClient(server.socket);
});

afterEach(async () => {
  client.close();
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

describe('serveSnapshotter', () => {
  it('passes each method through, with containerd field names and types', async () => {
    const prepared = await call<{ mounts: unknown[] }>(client, 'Prepare', { snapshotter: 'x', key: 'k', parent: 'p', labels: { l: 'v' } });
    expect(prepared.mounts).toEqual([{ type: 'ext4', source: '/dev/mapper/x-snap-1', target: '', options: ['ro'] }]);
    await call(client, 'View', { key: 'v' }); // no parent, no labels
    await call(client, 'Mounts', { key: 'k' });
    await call(client, 'Commit', { name: 'n', key: 'k', labels: { c: 'd' } });
    await call(client, 'Remove', { key: 'k' });
    const s = await call<{ info: WireInfo }>(client, 'Stat', { key: 'k' });
    expect(s.info).toEqual({
      name: 'k',
      parent: '',
      kind: 'ACTIVE',
      labels: { a: '1' },
      created_at: { seconds: Math.floor(created.getTime() / 1000), nanos: 678_000_000 },
      updated_at: { seconds: Math.floor(created.getTime() / 1000), nanos: 678_000_000 },
    });
    const u = await call<{ info: WireInfo }>(client, 'Update', {
      info: { name: 'n', labels: { x: 'y' } },
      update_mask: { paths: ['labels.x'] },
    });
    expect(u.info.labels).toEqual({ x: 'y' });
    expect(u.info.kind).toBe('COMMITTED');
    expect(await call(client, 'Usage', { key: 'k' })).toEqual({ size: 2 ** 40 + 3, inodes: 0 });
    await call(client, 'Cleanup', {});
    expect(fake.calls).toEqual([
      ['prepare', 'k', 'p', { labels: { l: 'v' } }],
      ['view', 'v', undefined, {}],
      ['mounts', 'k'],
      ['commit', 'n', 'k', { labels: { c: 'd' } }],
      ['remove', 'k'],
      ['stat', 'k'],
      ['update', { name: 'n', labels: { x: 'y' } }, 'labels.x'],
      ['usage', 'k'],
      ['cleanup'],
    ]);
    expect(logged).toEqual([]);
  });

  it('streams List in batches of 100 and passes the filters to walk', async () => {
    const messages = await listMessages(client, { filters: ['kind==committed', 'name==s1'] });
    const batches = messages.map((m) => m.info.length);
    const names = messages.flatMap((m) => m.info.map((i) => i.name));
    expect(batches).toEqual([100, 100, 50]);
    expect(names).toEqual(Array.from({ length: 250 }, (_, i) => `s${i}`));
    expect(fake.calls[0]).toEqual(['walk', expect.any(Function), 'kind==committed', 'name==s1']);
  });

  it("maps DmError codes to containerd's errdefs statuses and logs one line per failed call", async () => {
    const cases: Array<[DmErrorCode, grpc.status]> = [
      ['ERR_DM_NOT_FOUND', grpc.status.NOT_FOUND],
      ['ERR_DM_ALREADY_EXISTS', grpc.status.ALREADY_EXISTS],
      ['ERR_DM_FAILED_PRECONDITION', grpc.status.FAILED_PRECONDITION],
      ['ERR_DM_INVALID_ARG', grpc.status.INVALID_ARGUMENT],
      ['ERR_DM_POOL_FULL', grpc.status.RESOURCE_EXHAUSTED],
      ['EIO', grpc.status.UNKNOWN],
    ];
    for (const [code, status] of cases) {
      fake.failNext(new DmError(`it failed with ${code}`, { code }));
      const e = (await call(client, 'Remove', { key: 'k1' }).catch((e: unknown) => e)) as grpc.ServiceError;
      expect([e.code, e.details]).toEqual([status, `it failed with ${code}`]);
    }
    fake.failNext(new DmError('nope', { code: 'ERR_DM_NOT_FOUND' }));
    const e = (await listMessages(client).catch((e: unknown) => e)) as grpc.ServiceError;
    expect(e.code).toBe(grpc.status.NOT_FOUND);
    expect(logged).toEqual([
      ...cases.map(([code]) => `devmapper snapshotter: Remove key="k1": ${code}: it failed with ${code}`),
      'devmapper snapshotter: List: ERR_DM_NOT_FOUND: nope',
    ]);
  });

  it('close lets a call in flight finish, then removes the socket; a second server on a live socket is refused', async () => {
    await expect(serveSnapshotter(fake.sn, { socket: server.socket })).rejects.toMatchObject({ code: 'ERR_DM_ALREADY_EXISTS' });
    const release = fake.hold();
    const inFlight = call<{ mounts: unknown[] }>(client, 'Prepare', { key: 'slow' });
    while (!fake.calls.some((c) => c[0] === 'prepare')) await new Promise((r) => setTimeout(r, 5));
    let closed = false;
    const closing = server.close().then(() => (closed = true));
    await new Promise((r) => setTimeout(r, 50));
    expect(closed).toBe(false); // still waiting for the call
    release();
    expect((await inFlight).mounts).toHaveLength(1);
    await closing;
    await expect(stat(server.socket)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('replaces a stale socket left by a killed server', async () => {
    const path = join(dir, 'stale.sock');
    const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => console.log('up'))`]);
    await new Promise((r) => child.stdout.once('data', r));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    expect((await stat(path)).isSocket()).toBe(true); // left behind, nobody listening
    const other = await serveSnapshotter(fake.sn, { socket: path });
    const c = snapshotsClient(path);
    await call(c, 'Cleanup', {});
    c.close();
    await other.close();
    expect(fake.calls).toEqual([['cleanup']]);
  });
});
