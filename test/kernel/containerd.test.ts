// A real containerd (Debian's, 1.6) end to end: an image archive built offline from busybox-static
// is imported and run with the native snapshotter, then with containerd's own devmapper snapshotter
// on a loop-backed thin pool made with the library. Proves the kit (scripts/containerd-kit.mjs) that the
// proxy snapshotter's end-to-end test and benchmark build on.
import { mkdir } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { buildBusyboxImage, type BusyboxImage } from '../../scripts/oci-busybox.mjs';
import { dm, ThinPool } from '../../lib/index';
import { Containerd } from '../../scripts/containerd-kit.mjs';
import { RUN, SCRATCH, sweep } from './helpers';

const IMAGE = 'docker.io/library/devmapper-busybox:test';
const RELEASE = `devmapper-busybox ${RUN}`; // unique per run: the output cannot come from an older import

let archive: string;
let image: BusyboxImage;

/** Run `fn`, print how long it took (the numbers the benchmark will want), return its result. */
async function timed<T>(label: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    console.log(`${label}: ${(performance.now() - t0).toFixed(0)} ms`);
  }
}

/** A containerd for one test: its log printed if the test fails, stopped after. */
async function withContainerd(o: Parameters<typeof Containerd.start>[0], fn: (c: Containerd) => Promise<void>): Promise<void> {
  const c = await timed('containerd start', () => Containerd.start(o));
  onTestFailed(async () => console.log(`--- ${c.logFile} ---\n${await c.logText()}`));
  try {
    await fn(c);
  } finally {
    await c.stop();
  }
}

describe('containerd end to end', () => {
  beforeAll(async () => {
    await sweep();
    archive = `${SCRATCH}/busybox.oci.tar`;
    await mkdir(SCRATCH, { recursive: true });
    image = await buildBusyboxImage(archive, { name: IMAGE, release: RELEASE });
  });
  afterAll(sweep);

  it('imports the archive and runs it with the native snapshotter', async () => {
    await withContainerd({ dir: `${SCRATCH}/ctr-native` }, async (c) => {
      const imported = await timed('native: import', () => c.ctr(['images', 'import', '--snapshotter', 'native', archive]));
      expect(imported).toContain(`unpacking ${IMAGE} (${image.manifest})...done`);
      expect((await c.ctr(['images', 'ls', '-q'])).split('\n')).toContain(IMAGE);
      const out = await timed('native: run', () =>
        c.ctr(['run', '--rm', '--snapshotter', 'native', IMAGE, `${RUN}native`, 'cat', '/etc/image-release']),
      );
      expect(out).toBe(`${RELEASE}\n`);
      expect(await c.ctr(['containers', 'ls', '-q'])).toBe(''); // --rm removed it
    });
  });

  it("imports and runs it with containerd's devmapper snapshotter on a loop-backed thin pool", async () => {
    const pool = await ThinPool.createLoopBacked({ dir: `${SCRATCH}/pool`, name: `${RUN}ctr-pool`, dataSize: '1G', metadataSize: '64M' });
    try {
      const dir = `${SCRATCH}/ctr-dm`;
      await withContainerd({ dir, devmapper: { poolName: pool.name, rootPath: `${dir}/devmapper`, baseImageSize: '64MB' } }, async (c) => {
        const imported = await timed('devmapper: import', () => c.ctr(['images', 'import', '--snapshotter', 'devmapper', archive]));
        expect(imported).toContain(`unpacking ${IMAGE} (${image.manifest})...done`);
        // The layer is a committed snapshot named by its uncompressed digest, on a thin device of our pool.
        const snapshots = await c.ctr(['snapshots', '--snapshotter', 'devmapper', 'ls']);
        expect(snapshots).toMatch(new RegExp(`^${image.diffId}\\s+Committed`, 'm'));
        expect((await pool.status()).usedDataBlocks).toBeGreaterThan(0);

        // The container's root is a thin snapshot of it (ext4 on /dev/mapper/<pool>-snap-N), writable.
        const script = 'cat /etc/image-release; grep " / " /proc/self/mounts; echo written > /probe; cat /probe';
        const out = await timed('devmapper: run', () =>
          c.ctr(['run', '--rm', '--snapshotter', 'devmapper', IMAGE, `${RUN}dm`, 'sh', '-c', script]),
        );
        const [release, root, probe] = out.split('\n');
        expect(release).toBe(RELEASE);
        expect(root).toMatch(new RegExp(`^/dev/mapper/${pool.name}-snap-\\d+ / ext4 rw`));
        expect(probe).toBe('written');

        // A second run of the same image: a fresh snapshot, without the first one's file.
        const again = await timed('devmapper: run again', () =>
          c.ctr(['run', '--rm', '--snapshotter', 'devmapper', IMAGE, `${RUN}dm2`, 'sh', '-c', 'cat /etc/image-release; ls /probe || true']),
        );
        expect(again.split('\n')[0]).toBe(RELEASE);
        expect(again).not.toMatch(/^\/probe$/m);
      });
      // containerd deactivates a snapshot's device once its container is gone: only the pool is left.
      expect((await dm.list()).map((d) => d.name).filter((n) => n.startsWith(pool.name))).toEqual([pool.name]);
    } finally {
      await pool.destroy().catch(() => undefined); // sweep() after removes whatever this could not
    }
  });
});
