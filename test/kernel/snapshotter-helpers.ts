// Helpers for the snapshotter conformance tests, after the ones containerd's
// snapshotter test suite uses: file appliers (continuity's fstest), mounting a
// snapshot's Mount[] and comparing two trees the way continuity's manifests do
// (path, type, mode, owner, content, symlink target, hard-link group; the
// root itself and timestamps are not compared).
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { chmod, chown, link, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { mountFlags } from '../../lib/filesystem';
import type { Mount, Snapshotter } from '../../lib/index';
import * as sys from '../../lib/sys';

const run = promisify(execFile);

/** One change to a tree rooted at `root`; appliers compose with apply(). */
export type Applier = (root: string) => Promise<void>;

/** Write `name` with `content`, then set its mode to exactly `perm` (no umask). */
export const createFile =
  (name: string, content: string | Buffer, perm: number): Applier =>
  async (root) => {
    const path = join(root, name);
    await writeFile(path, content, { mode: perm });
    await chmod(path, perm);
  };

/** mkdir -p `name`, then set its mode to exactly `perm`. */
export const createDir =
  (name: string, perm: number): Applier =>
  async (root) => {
    const path = join(root, name);
    await mkdir(path, { recursive: true, mode: perm });
    await chmod(path, perm);
  };

/** rm -rf `name`. */
export const removeAll =
  (name: string): Applier =>
  (root) =>
    rm(join(root, name), { recursive: true, force: true });

export const renamePath =
  (from: string, to: string): Applier =>
  (root) =>
    rename(join(root, from), join(root, to));

export const chownPath =
  (name: string, uid: number, gid: number): Applier =>
  (root) =>
    chown(join(root, name), uid, gid);

/** A hard link `to` of the existing `from`. */
export const hardLink =
  (from: string, to: string): Applier =>
  (root) =>
    link(join(root, from), join(root, to));

/** The appliers in order, as one. */
export const apply =
  (...as: Applier[]): Applier =>
  async (root) => {
    for (const a of as) await a(root);
  };

/**
 * Mount each of `mounts` at `target` (mkdir -p first) with mount(2), options turned into
 * flags and data as mount(8) does, as containerd's mount.All does.
 */
export async function mountAll(mounts: Mount[], target: string): Promise<void> {
  await mkdir(target, { recursive: true });
  for (const m of mounts) {
    const { flags, data } = mountFlags(m.options);
    await sys.mount(m.source, target, m.type, flags, data);
  }
}

/** The same with the mount(8) tool: `mount -t TYPE [-o OPTIONS] SOURCE TARGET` (spawning it is slow in the VM). */
export async function mountAllWithTool(mounts: Mount[], target: string): Promise<void> {
  await mkdir(target, { recursive: true });
  for (const m of mounts) {
    const opts = m.options.length > 0 ? ['-o', m.options.join(',')] : [];
    await run('mount', ['-t', m.type, ...opts, m.source, target]);
  }
}

/** Unmount everything mounted at `target` (top first, not lazily: the filesystem is clean after), until nothing is. */
export async function unmountAll(target: string): Promise<void> {
  while (await isMounted(target)) await sys.umount(target);
}

export async function isMounted(target: string): Promise<boolean> {
  const lines = (await readFile('/proc/self/mounts', 'utf8')).split('\n');
  return lines.some((l) => l.split(' ')[1] === target);
}

/** Mount `mounts` at a fresh directory under `work`, run `fn` on it, always unmount and remove the directory. */
export async function withMounted<T>(mounts: Mount[], work: string, fn: (dir: string) => Promise<T>): Promise<T> {
  await mkdir(work, { recursive: true });
  const dir = await mkdtemp(join(work, 'mnt-'));
  try {
    await mountAll(mounts, dir);
    return await fn(dir);
  } finally {
    await unmountAll(dir);
    await rm(dir, { recursive: true, force: true });
  }
}

/** One entry of a tree's manifest. */
export interface Entry {
  type: 'file' | 'dir' | 'symlink' | 'other';
  mode: string; // octal, type bits included
  uid: number;
  gid: number;
  size?: number;
  sha256?: string;
  target?: string;
  /** Every path of the tree that is this same inode (hard links), sorted. */
  links?: string[];
}

/**
 * The manifest of the tree at `root`: relative path -> entry, root excluded.
 * Sync calls: many small ones are slow as promises in the VM.
 */
export async function manifest(root: string): Promise<Map<string, Entry>> {
  const out = new Map<string, Entry>();
  const byInode = new Map<string, string[]>();
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(root, rel)).sort()) {
      const relPath = rel === '' ? `/${name}` : `${rel}/${name}`;
      const st = lstatSync(join(root, relPath));
      const base = { mode: st.mode.toString(8), uid: st.uid, gid: st.gid };
      if (st.isDirectory()) {
        out.set(relPath, { type: 'dir', ...base });
        walk(relPath);
      } else if (st.isFile()) {
        const sha256 = createHash('sha256')
          .update(readFileSync(join(root, relPath)))
          .digest('hex');
        out.set(relPath, { type: 'file', ...base, size: st.size, sha256 });
        const key = `${st.dev}:${st.ino}`;
        byInode.set(key, [...(byInode.get(key) ?? []), relPath]);
      } else if (st.isSymbolicLink()) {
        out.set(relPath, { type: 'symlink', ...base, target: readlinkSync(join(root, relPath)) });
      } else out.set(relPath, { type: 'other', ...base });
    }
  };
  walk('');
  for (const paths of byInode.values()) for (const p of paths) out.get(p)!.links = [...paths].sort();
  return out;
}

/** The differences between two manifests, one line each ('' when equal). */
export function manifestDiff(a: Map<string, Entry>, b: Map<string, Entry>): string {
  const lines: string[] = [];
  for (const [p, e] of a) {
    const got = b.get(p);
    if (!got) lines.push(`- ${p} (missing)`);
    else if (JSON.stringify(e) !== JSON.stringify(got)) lines.push(`~ ${p}: expected ${JSON.stringify(e)}, got ${JSON.stringify(got)}`);
  }
  for (const p of b.keys()) if (!a.has(p)) lines.push(`+ ${p} (unexpected)`);
  return lines.join('\n');
}

/** The differences between the trees at `expected` and `actual`, one line each ('' when equal). */
export async function treeDiff(expected: string, actual: string): Promise<string> {
  return manifestDiff(await manifest(expected), await manifest(actual));
}

/** The differences between what `applier` makes in an empty directory and the tree at `actual`. */
export async function diffWithApplier(actual: string, applier: Applier, work: string): Promise<string> {
  const dir = await mkdtemp(join(work, 'expected-'));
  try {
    await applier(dir);
    return await treeDiff(dir, actual);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const unique = () => randomBytes(4).toString('hex');

/** A committed snapshot holding `parent` plus what `applier` does: prepare, mount, apply, unmount, commit. Returns its name. */
export async function createSnapshot(s: Snapshotter, parent: string, work: string, applier: Applier): Promise<string> {
  const name = `layer-${unique()}`;
  const key = `${name}-prepare`;
  const mounts = await s.prepare(key, parent, { labels: { 'containerd.io/gc.root': 'conformance' } });
  await withMounted(mounts, work, applier);
  await s.commit(name, key);
  return name;
}

/** Mount a view of committed `name` and return the differences between it and the tree at `expected`; the view is removed after. */
export async function checkSnapshot(s: Snapshotter, work: string, name: string, expected: string): Promise<string> {
  const view = `${name}-view`;
  const mounts = await s.view(view, name);
  try {
    if (!mounts.every((m) => m.options.includes('ro'))) return `view ${view} mounts are not read-only: ${JSON.stringify(mounts)}`;
    return await withMounted(mounts, work, (dir) => treeDiff(expected, dir));
  } finally {
    await s.remove(view);
  }
}

/**
 * containerd's checkSnapshots: a chain of committed snapshots, one per applier, each
 * made by applying to a mount of a snapshot of the previous; after each, a read-only
 * view of it must equal one directory that had every applier so far applied to it.
 * Returns the snapshot names (bottom first) and every difference found.
 */
export async function checkSnapshots(s: Snapshotter, work: string, ...appliers: Applier[]): Promise<{ names: string[]; diffs: string[] }> {
  await mkdir(work, { recursive: true });
  const flat = await mkdtemp(join(work, 'flat-'));
  const names: string[] = [];
  const diffs: string[] = [];
  try {
    let parent = '';
    for (const [i, a] of appliers.entries()) {
      parent = await createSnapshot(s, parent, work, a);
      names.push(parent);
      await a(flat);
      const d = await checkSnapshot(s, work, parent, flat);
      if (d !== '') diffs.push(`layer ${i + 1} (${parent}):\n${d}`);
    }
  } finally {
    await rm(flat, { recursive: true, force: true });
  }
  return { names, diffs };
}
