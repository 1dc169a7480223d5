// Real containerd (Debian's 1.6) driving this package's snapshotter through
// the proxy plugin (`devmapper snapshotter serve`), with runc: image import,
// containers, a committed container snapshot, ctr's snapshot views against
// the plugin's own, a plugin killed mid-import, both daemons restarted, and
// garbage collection giving every thin id back to the pool.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { buildBusyboxImage, type BusyboxImage } from '../../scripts/oci-busybox.mjs';
import { dm, Snapshotter } from '../../lib/index';
import { call, listMessages, snapshotsClient, type WireInfo } from '../../lib/snapshotter/proto';
import { Containerd } from '../../scripts/containerd-kit.mjs';
import { RUN, SCRATCH, sweep, sweepSets } from './helpers';
import { holdablePool, liveThinIds, startProxy, stopProxy, untilWaitingInKernel, type HoldablePool, type Proxy } from './proxy-kit';
import { mountAll, unmountAll } from './snapshotter-helpers';

const SN = 'devmapper-node'; // the proxy plugin's name in containerd's config
const IMAGE = 'docker.io/library/devmapper-busybox:proxy';
const IMAGE2 = 'docker.io/library/devmapper-busybox:second';
const RELEASE = `proxied ${RUN}`;
const RELEASE2 = `second ${RUN}`;
const dir = join(SCRATCH, 'ctr-proxy');
const socket = join(dir, 'run', 'snapshotter.sock');
const root = join(dir, 'snapshotter');

let pool: HoldablePool;
let proxy: Proxy | undefined;
let ctr: Containerd | undefined;
let image: BusyboxImage;
let image2: BusyboxImage;
const archive = join(dir, 'busybox.oci.tar');
const archive2 = join(dir, 'busybox2.oci.tar');

const serveFlags = () => ['--root', root, ...pool.flags, '--base-size', '64M'];
const startCtr = () => Containerd.start({ dir: join(dir, 'containerd'), proxySnapshotters: { [SN]: socket }, manualGc: true });
const poolName = () => /\(pool (\S+)\)/.exec(proxy!.output())![1]!;

/** The plugin's own view: its List over its socket. */
async function pluginList(): Promise<WireInfo[]> {
  const c = snapshotsClient(socket);
  try {
    return (await listMessages(c)).flatMap((m) => m.info);
  } finally {
    c.close();
  }
}

/**
 * Until containerd reaches the restarted plugin again: its gRPC connection
 * backs off while the plugin is down (1 s, then 1.6× a try), and calls fail at
 * once until a reconnect succeeds. The event is a call through it that works.
 */
async function untilReconnected(c: Containerd, bound = 180_000): Promise<void> {
  const end = Date.now() + bound;
  for (;;) {
    const err = await c.ctr(['snapshots', '--snapshotter', SN, 'ls']).then(
      () => undefined,
      (e: Error) => e,
    );
    if (!err) return;
    if (!/connection error|Unavailable|transport/i.test(err.message) || Date.now() > end) throw err;
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** containerd keys backend snapshots `<namespace>/<n>/<key>`; this finds the one for `key`. */
const backendOf = (infos: WireInfo[], key: string) => infos.find((i) => i.name.endsWith(`/${key}`));

beforeAll(async () => {
  await sweep();
  await mkdir(dir, { recursive: true });
  image = await buildBusyboxImage(archive, { name: IMAGE, release: RELEASE });
  image2 = await buildBusyboxImage(archive2, { name: IMAGE2, release: RELEASE2 });
  pool = await holdablePool('ctrp', 2 * 1024 ** 3, 64 << 20);
  proxy = await startProxy(socket, serveFlags());
  ctr = await startCtr();
});

afterAll(async () => {
  await ctr?.stop().catch(() => undefined);
  if (proxy) await stopProxy(proxy);
  await sweepSets();
});

describe('containerd with the proxy snapshotter', () => {
  const showLogs = () =>
    onTestFailed(async () => console.log(`--- containerd ---\n${await ctr?.logText(80)}\n--- plugin ---\n${proxy?.output()}`));

  it('imports an image and runs a container on a thin snapshot', async () => {
    showLogs();
    const c = ctr!;
    expect(await c.ctr(['images', 'import', '--snapshotter', SN, archive])).toContain(`unpacking ${IMAGE} (${image.manifest})...done`);
    const out = await c.ctr([
      'run',
      '--rm',
      '--snapshotter',
      SN,
      IMAGE,
      `${RUN}one`,
      'sh',
      '-c',
      'cat /etc/image-release; grep " / " /proc/self/mounts',
    ]);
    const [release, rootLine] = out.split('\n');
    expect(release).toBe(RELEASE);
    expect(rootLine).toMatch(/^\/dev\/mapper\/\S+-snap-\d+ \/ ext4 rw/);
    // The layer is committed on the plugin under containerd's key for it (the layer's chain id).
    expect(backendOf(await pluginList(), image.diffId)?.kind).toBe('COMMITTED');
  });

  it("commits a container's snapshot; a container on a snapshot of that sees the file", async () => {
    showLogs();
    const c = ctr!;
    await c.ctr(['run', '--snapshotter', SN, IMAGE, `${RUN}writer`, 'sh', '-c', `echo note ${RUN} > /note`]);
    await c.ctr(['containers', 'delete', '--keep-snapshot', `${RUN}writer`]);
    await c.ctr(['snapshots', '--snapshotter', SN, 'commit', 'writer-layer', `${RUN}writer`]);
    // ctr prints containerd's mount.Mount as Go encodes it: Type, Source, Options.
    const printed = await c.ctr(['snapshots', '--snapshotter', SN, 'prepare', '--mounts', 'reader-root', 'writer-layer']);
    const mounts = (JSON.parse(printed) as Array<{ Type: string; Source: string; Options: string[] | null }>).map((m) => ({
      type: m.Type,
      source: m.Source,
      options: m.Options ?? [],
    }));
    expect(mounts).toEqual([{ type: 'ext4', source: expect.stringMatching(/^\/dev\/mapper\/\S+-snap-\d+$/), options: [] }]);
    const rootfs = join(dir, 'reader-rootfs');
    await mkdir(rootfs, { recursive: true });
    await mountAll(mounts, rootfs);
    try {
      // A bare rootfs has no image config, so no PATH: the command by its path.
      expect(await c.ctr(['run', '--rm', '--rootfs', rootfs, `${RUN}reader`, '/bin/cat', '/note'])).toBe(`note ${RUN}\n`);
    } finally {
      await unmountAll(rootfs);
    }
  });

  it("ctr's snapshot ls, info, usage and tree agree with the plugin", async () => {
    showLogs();
    const c = ctr!;
    const backend = await pluginList();
    const rows = (await c.ctr(['snapshots', '--snapshotter', SN, 'ls']))
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => l.trim().split(/\s+/));
    // KEY PARENT KIND (PARENT empty for a base layer: two fields)
    const keys = rows.map((r) => r[0]!).sort();
    expect(keys).toEqual([image.diffId, 'reader-root', 'writer-layer'].sort());
    for (const r of rows) {
      const [key, parent, kind] = r.length === 2 ? [r[0]!, '', r[1]!] : [r[0]!, r[1]!, r[2]!];
      const b = backendOf(backend, key);
      expect(b, key).toBeDefined();
      expect(b!.kind).toBe(kind.toUpperCase());
      if (parent) expect(b!.parent.endsWith(`/${parent}`), `${key}: ${b!.parent}`).toBe(true);
      else expect(b!.parent).toBe('');
    }
    // (The plugin may hold more: containerd removes a snapshot from its plugin at its next garbage collection.)
    const info = JSON.parse(await c.ctr(['snapshots', '--snapshotter', SN, 'info', 'writer-layer'])) as { Kind: string; Parent: string };
    expect(info).toMatchObject({ Kind: 'Committed', Parent: image.diffId });

    const usage = (await c.ctr(['snapshots', '--snapshotter', SN, 'usage', '-b']))
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => l.trim().split(/\s+/));
    const client = snapshotsClient(socket);
    try {
      for (const [key, size] of usage) {
        const own = await call<{ size: number }>(client, 'Usage', { key: backendOf(backend, key!)!.name });
        expect(Number(size), key).toBe(own.size);
        expect(own.size).toBeGreaterThan(0);
      }
    } finally {
      client.close();
    }
    expect(usage).toHaveLength(3);

    // The tree: the image layer, the committed container layer under it, the prepared root under that.
    const tree = (await c.ctr(['snapshots', '--snapshotter', SN, 'tree'])).split('\n');
    const at = (key: string) => tree.findIndex((l) => l.trim().replace(/^\\_\s*/, '') === key);
    const indent = (key: string) => tree[at(key)]!.search(/\S/);
    expect(at(image.diffId)).toBeGreaterThanOrEqual(0);
    expect(at('writer-layer')).toBeGreaterThan(at(image.diffId));
    expect(at('reader-root')).toBeGreaterThan(at('writer-layer'));
    expect(indent('writer-layer')).toBeGreaterThan(indent(image.diffId));
    expect(indent('reader-root')).toBeGreaterThan(indent('writer-layer'));
  });

  it('the plugin killed during an import and restarted: the retried import succeeds, and records and pool agree', async () => {
    showLogs();
    const c = ctr!;
    const p = proxy!;
    // Hold the import's Prepare in the kernel (the pool's data device suspended), kill the plugin there.
    await dm.suspend(pool.data.name);
    let resumed = false;
    try {
      const importing = c.ctr(['images', 'import', '--snapshotter', SN, archive2]).then(
        () => 'imported',
        (e: Error) => e.message,
      );
      await untilWaitingInKernel(p.child.pid!, p.output);
      p.child.kill('SIGKILL');
      await dm.resume(pool.data.name);
      resumed = true;
      expect(await p.exited).toBe('SIGKILL');
      proxy = undefined;
      expect(await importing).not.toBe('imported');
    } finally {
      if (!resumed) await dm.resume(pool.data.name);
    }
    proxy = await startProxy(socket, serveFlags());
    await untilReconnected(c);
    expect(await c.ctr(['images', 'import', '--snapshotter', SN, archive2])).toContain(`unpacking ${IMAGE2} (${image2.manifest})...done`);
    expect(await c.ctr(['run', '--rm', '--snapshotter', SN, IMAGE2, `${RUN}two`, 'cat', '/etc/image-release'])).toBe(`${RELEASE2}\n`);
    expect(backendOf(await pluginList(), image2.diffId)?.kind).toBe('COMMITTED');
  });

  it('containerd and the plugin both restarted: every snapshot is still there, and records and pool agree', async () => {
    showLogs();
    const before = (await pluginList()).map((i) => [i.name, i.kind, i.parent]).sort();
    const ctrBefore = await ctr!.ctr(['snapshots', '--snapshotter', SN, 'ls']);
    const name = poolName();
    await ctr!.stop();
    ctr = undefined;
    expect(await stopProxy(proxy!)).toBe(0);
    proxy = undefined;
    // With both down: each record's thin id is in the pool, and the pool has no other.
    const sn = await Snapshotter.open({ root, dataDevice: pool.data.path, metadataDevice: pool.metadataPath });
    try {
      const recorded = sn
        .records()
        .map((r) => r.deviceId)
        .sort((a, b) => a - b);
      expect(recorded).toHaveLength(before.length);
      expect(await liveThinIds(name, pool.metadataPath)).toEqual(recorded);
    } finally {
      await sn.close();
    }
    proxy = await startProxy(socket, serveFlags());
    ctr = await startCtr();
    expect((await pluginList()).map((i) => [i.name, i.kind, i.parent]).sort()).toEqual(before);
    expect(await ctr.ctr(['snapshots', '--snapshotter', SN, 'ls'])).toBe(ctrBefore);
    expect(await ctr.ctr(['run', '--rm', '--snapshotter', SN, IMAGE, `${RUN}three`, 'cat', '/etc/image-release'])).toBe(`${RELEASE}\n`);
  });

  it("image rm and containerd's garbage collection remove every snapshot: no thin id, no device left", async () => {
    showLogs();
    const c = ctr!;
    // ctr labels what its snapshot commands make as garbage-collection roots: those go by hand.
    await c.ctr(['snapshots', '--snapshotter', SN, 'rm', 'reader-root']);
    await c.ctr(['snapshots', '--snapshotter', SN, 'rm', 'writer-layer']);
    await c.ctr(['images', 'rm', '--sync', IMAGE, IMAGE2]);
    expect(await c.ctr(['snapshots', '--snapshotter', SN, 'ls'])).toMatch(/^KEY\s+PARENT\s+KIND\s*$/);
    expect(await pluginList()).toEqual([]);
    const name = poolName();
    expect(await liveThinIds(name, pool.metadataPath)).toEqual([]);
    const prefix = name.replace(/-pool$/, '');
    expect((await dm.list()).map((d) => d.name).filter((n) => n.startsWith(`${prefix}-snap-`))).toEqual([]);
  });
});
