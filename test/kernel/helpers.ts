// Shared set-up for kernel tests: a unique name prefix per run, a scratch
// directory of sparse backing files, a sweep of leftovers, and a loop-backed
// thin pool built with raw ioctls (no library policy in the way).
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rm, truncate } from 'node:fs/promises';
import { native } from '../../lib/binding';
import { dm, loop } from '../../lib/index';

export const PREFIX = 'dmt-';
/** Unique per test file run: `dmt-<pid>-<hex>-`. */
export const RUN = `${PREFIX}${process.pid}-${randomBytes(3).toString('hex')}-`;
export const SCRATCH = `/tmp/devmapper-test/${process.pid}`;

/** True inside the project's test VMs (destructive whole-kernel calls are safe there). */
export async function inTestVm(): Promise<boolean> {
  const cmdline = await readFile('/proc/cmdline', 'utf8').catch(() => '');
  return cmdline.includes('rootfstype=hostfs') || cmdline.includes('devmapper.run='); // UML, or scripts/vm/run --qemu
}

export async function sparseFile(name: string, bytes: number): Promise<string> {
  await mkdir(SCRATCH, { recursive: true });
  const path = `${SCRATCH}/${name}`;
  await (await open(path, 'w')).close();
  await truncate(path, bytes);
  return path;
}

/** Unmount, remove every test device (dependents first), detach scratch loop devices. */
export async function sweep(): Promise<void> {
  const mounts = (await readFile('/proc/mounts', 'utf8')).split('\n').map((l) => l.split(' ')[1] ?? '');
  for (const m of mounts.filter((m) => m.startsWith('/tmp/devmapper-test/')).reverse()) {
    await native.umount2(m, native.sysConstants.MNT_DETACH).catch(() => undefined);
  }
  for (let round = 0; round < 10; round++) {
    const ours = (await dm.list()).filter((d) => d.name.startsWith(PREFIX));
    if (ours.length === 0) break;
    // Devices that others depend on (pools) fail with EBUSY until those go.
    for (const d of ours.sort((a, b) => Number(a.name.endsWith('pool')) - Number(b.name.endsWith('pool')))) {
      await dm.resume(d.name).catch(() => undefined); // a suspended device blocks its users
      await dm.remove(d.name).catch(() => undefined);
    }
  }
  for (const l of await loop.list()) {
    if (l.backingFile.startsWith('/tmp/devmapper-test/')) await loop.detach(l.number).catch(() => undefined);
  }
  await rm(SCRATCH, { recursive: true, force: true });
}

/** Remove what device sets left (named after their root, `devmapper-…`, not the test prefix): devices first, then pools; then sweep(). */
export async function sweepSets(): Promise<void> {
  for (const d of await dm.list())
    if (d.name.startsWith('devmapper-') && !d.name.endsWith('-pool')) await dm.remove(d.name).catch(() => undefined);
  for (const d of await dm.list()) if (d.name.startsWith('devmapper-')) await dm.remove(d.name).catch(() => undefined);
  await sweep();
}

export const sectors = (bytes: number) => bytes / 512;

export async function readBlock(path: string, offset: number, length: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    await fh.read(buf, 0, length, offset);
    return buf;
  } finally {
    await fh.close();
  }
}

export async function writeBlock(path: string, offset: number, data: Buffer): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.write(data, 0, data.length, offset);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export interface ScratchPool {
  name: string;
  path: string;
  dataLoop: loop.LoopDevice;
  metaLoop: loop.LoopDevice;
  dataSectors: number;
}

/** A thin pool on two loop devices: 128 KiB blocks, `dataBytes` of data. */
export async function scratchPool(tag: string, dataBytes = 256 << 20): Promise<ScratchPool> {
  const dataLoop = await loop.attach(await sparseFile(`${tag}-data`, dataBytes));
  const metaLoop = await loop.attach(await sparseFile(`${tag}-meta`, 16 << 20));
  await writeBlock(metaLoop.path, 0, Buffer.alloc(4096)); // no stale superblock
  const name = `${RUN}${tag}-pool`;
  const dataSectors = sectors(dataBytes);
  const dev = await dm.create(name, {
    table: [
      { start: 0, length: dataSectors, type: 'thin-pool', params: `${metaLoop.path} ${dataLoop.path} 256 32768 1 skip_block_zeroing` },
    ],
  });
  return { name, path: dev.path, dataLoop, metaLoop, dataSectors };
}

/** A thin device `id` of `bytes` on the pool, created and activated. */
export async function thin(pool: ScratchPool, id: number, bytes = 64 << 20, tag = `thin${id}`): Promise<dm.DeviceInfo> {
  await dm.message(pool.name, `create_thin ${id}`);
  return dm.create(`${RUN}${tag}`, { table: [{ start: 0, length: sectors(bytes), type: 'thin', params: `${pool.path} ${id}` }] });
}

/**
 * Run a thin-provisioning tool on a metadata file. The tools open with
 * O_DIRECT, which tmpfs refuses, so they read it through a read-only loop.
 */
async function thinTool(tool: string, args: string[], metadataFile: string): Promise<string> {
  const { execFile } = await import('node:child_process');
  const dev = await loop.attach(metadataFile, { readOnly: true });
  try {
    return await new Promise((resolve, reject) =>
      execFile(tool, [...args, dev.path], { maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
        err ? reject(new Error(`${tool} failed (${err.message}): ${stderr}${stdout}`)) : resolve(stdout + stderr),
      ),
    );
  } finally {
    await loop.detach(dev.path);
  }
}

/** thin_check a metadata file (of a pool that is down); rejects unless clean. */
export const thinCheck = (metadataFile: string) => thinTool('thin_check', [], metadataFile);

/** The thin ids in a metadata file (of a pool that is down), from thin_dump. */
export async function thinIds(metadataFile: string): Promise<number[]> {
  const xml = await thinTool('thin_dump', [], metadataFile);
  return [...xml.matchAll(/<device dev_id="(\d+)"/g)].map((m) => Number(m[1]));
}

/** Mapped blocks per thin id in a metadata file (of a pool that is down), from thin_dump. */
export async function thinDump(metadataFile: string): Promise<Map<number, number>> {
  const xml = await thinTool('thin_dump', [], metadataFile);
  return new Map([...xml.matchAll(/<device dev_id="(\d+)" mapped_blocks="(\d+)"/g)].map((m) => [Number(m[1]), Number(m[2])]));
}

/**
 * Whether device `name` is gone within `ms`: a deferred removal completes on
 * the kernel's workqueue after the last close returns, not during it.
 */
export async function gone(name: string, ms = 30_000): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    if (!(await dm.info(name).catch(() => undefined))) return true;
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
}
