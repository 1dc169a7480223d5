// A set's state in the kernel that its records do not hold: what a process
// killed mid-operation leaves (a scratch mount of a filesystem being grown, a
// device suspended for a snapshot), mounts made by an earlier process, and
// the scratch mount a growth makes.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as dm from '../dm';
import { growFilesystem, unmountLazily, type FsType } from '../filesystem';
import { humanSize } from '../format';
import type { ThinPool } from '../pool/index';
import { step, type ProgressHandler } from '../progress';

/** Unmount the library's scratch mounts (`root`/mnt/.NAME: a growth, a format) and resume suspended devices named `<prefix>-*`. */
export async function mendLeftovers(root: string, prefix: string): Promise<void> {
  const scratch = join(root, 'mnt', '.');
  const mounts = (await readFile('/proc/self/mounts', 'utf8')).split('\n').map((l) => l.split(' ')[1] ?? '');
  for (const m of mounts.filter((m) => m.startsWith(scratch))) await unmountLazily(m).catch(() => undefined);
  for (const d of await dm.list()) {
    if (!d.name.startsWith(`${prefix}-`)) continue;
    const live = await dm.info(d.name).catch(() => undefined);
    if (live?.suspended) await dm.resume(d.name);
  }
}

/** Where each of `ids` is mounted now (its first mount point), by the node `nodeOf(id)`. */
export async function mountsOf(ids: string[], nodeOf: (id: string) => string): Promise<Map<string, string>> {
  // Source → first mount point, once: a set may hold tens of thousands of records.
  const targets = new Map<string, string>();
  for (const [source, target] of (await readFile('/proc/self/mounts', 'utf8')).split('\n').map((l) => l.split(' '))) {
    if (source && target && !targets.has(source)) targets.set(source, target);
  }
  const found = new Map<string, string>();
  for (const id of ids) {
    const target = targets.get(nodeOf(id));
    if (target) found.set(id, target.replace(/\\040/g, ' '));
  }
  return found;
}

/**
 * Activate thin id `thinId` as `name` at `size` bytes and grow its filesystem
 * to fill it, on a scratch mount; the device goes again after.
 */
export async function growDevice(
  pool: ThinPool,
  name: string,
  thinId: number,
  size: number,
  o: { fs: FsType; scratch: string; progress: ProgressHandler | undefined; what: string },
): Promise<void> {
  if (await dm.info(name).catch(() => undefined)) await dm.remove(name, { retry: true });
  const dev = await pool.activate(thinId, { name, size });
  try {
    await step(o.progress, `growing the ${o.fs} filesystem of ${o.what} to ${humanSize(size)}`, () =>
      growFilesystem(dev.path, o.fs, o.scratch),
    );
  } finally {
    await dm.remove(name, { retry: true });
  }
}
