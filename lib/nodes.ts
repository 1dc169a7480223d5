// Device-node upkeep for /dev/mapper/NAME and /dev/loopN. With udev running
// we wait (bounded) for it to make the node; without udev (containers, the
// test VM) we mknod it ourselves and remove or rename it with the device.
// /dev is in memory (devtmpfs or tmpfs), so the node calls run on the JS
// thread: each is quicker than a trip to the threadpool.
import { lstatSync, mkdirSync, renameSync, statSync, unlinkSync } from 'node:fs';
import { access, lstat, readdir, unlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DevNumber } from './binding';
import * as sys from './sys';

export const MAPPER_DIR = '/dev/mapper';
const UDEV_CONTROL = '/run/udev/control';
const UDEV_WAIT_MS = 2000;

export const mapperPath = (name: string) => `${MAPPER_DIR}/${name}`;

let udevSeen: Promise<boolean> | undefined;

/**
 * True when a udev daemon is managing /dev (its control socket exists).
 * Looked up once per process, as libdevmapper does: a clock read per call
 * would cost a syscall on every create and remove.
 */
export function udevRunning(): Promise<boolean> {
  udevSeen ??= access(UDEV_CONTROL).then(
    () => true,
    () => false,
  );
  return udevSeen;
}

const madeDirs = new Set<string>();

/** The dev number of the block node at `path`, if it is one. */
export function nodeDev(path: string): DevNumber | undefined {
  const st = statSync(path, { throwIfNoEntry: false });
  if (!st?.isBlockDevice()) return undefined;
  return { major: Math.floor(st.rdev / 256) & 0xfff, minor: (st.rdev & 0xff) | ((Math.floor(st.rdev / 0x100000) & 0xfff) << 8) };
}

const sameDev = (a: DevNumber | undefined, b: DevNumber) => a !== undefined && a.major === b.major && a.minor === b.minor;

/** Make sure `path` is a block node for `dev` (mode 0660 less the umask, as mknod(2) gives). Safe to call concurrently for one path. */
export async function ensureBlockNode(path: string, dev: DevNumber): Promise<void> {
  const udev = await udevRunning();
  if (!udev) {
    // A new device's node is nearly always missing: make it in one syscall.
    // EEXIST (a node is there, maybe stale) or ENOENT (no directory yet): the careful way below.
    try {
      sys.mknodBlock(path, dev);
      return;
    } catch {
      // fall through
    }
  }
  if (sameDev(nodeDev(path), dev)) return;
  if (udev) {
    const deadline = Date.now() + UDEV_WAIT_MS;
    while (Date.now() < deadline) {
      await sleep(10);
      if (sameDev(nodeDev(path), dev)) return;
    }
  }
  // A node of an earlier device with this name: replace it. A missing node is
  // left alone here (another caller may be making it right now).
  if (lstatSync(path, { throwIfNoEntry: false })) {
    if (sameDev(nodeDev(path), dev)) return;
    try {
      unlinkSync(path);
    } catch {
      // gone already
    }
  }
  const dir = path.slice(0, path.lastIndexOf('/'));
  if (!madeDirs.has(dir)) {
    mkdirSync(dir, { recursive: true });
    madeDirs.add(dir);
  }
  try {
    sys.mknodBlock(path, dev);
  } catch (e) {
    // A concurrent caller made the same node first: fine if it is the right one.
    if (!sameDev(nodeDev(path), dev)) throw e;
  }
}

/** Remove a node we may have made; udev removes its own. */
export async function removeNode(path: string): Promise<void> {
  if (await udevRunning()) return;
  try {
    unlinkSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

export async function renameNode(from: string, to: string, dev: DevNumber): Promise<void> {
  if (await udevRunning()) return ensureBlockNode(to, dev);
  if (sameDev(nodeDev(from), dev)) renameSync(from, to);
  await ensureBlockNode(to, dev);
}

/**
 * Without udev, drop /dev/mapper nodes whose device is gone (e.g. after a
 * deferred removal completed). `live` holds the names that still exist.
 */
export async function pruneMapperNodes(live: ReadonlySet<string>): Promise<void> {
  if (await udevRunning()) return;
  let entries: string[];
  try {
    entries = await readdir(MAPPER_DIR);
  } catch {
    return;
  }
  for (const name of entries) {
    if (name === 'control' || live.has(name)) continue;
    const path = mapperPath(name);
    const st = await lstat(path).catch(() => undefined);
    if (st?.isBlockDevice()) await unlink(path).catch(() => undefined);
  }
}
