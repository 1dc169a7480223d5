// Filesystems on thin devices: make, read the UUID, grow online, mount and
// unmount (the mount syscalls come from the addon; mkfs and the grow tools
// are e2fsprogs / xfsprogs).
import { execFile } from 'node:child_process';
import { mkdir, open, rmdir, writeFile } from 'node:fs/promises';
import * as sys from './sys';
import { DmError, errnoOf } from './errors';

/** A filesystem the library makes and mounts. */
export type FsType = 'ext4' | 'xfs';

/** Docker's mkfs.ext4 options: no discard pass, no lazy init left running in the kernel. */
const EXT4_ARGS = ['-E', 'nodiscard,lazy_itable_init=0,lazy_journal_init=0'];

export function run(tool: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(tool, args, { encoding: 'utf8' }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
      const what = missing
        ? `${tool} is not installed (Debian: ${tool.startsWith('mkfs.xfs') || tool.startsWith('xfs') ? 'xfsprogs' : 'e2fsprogs'})`
        : `${tool} ${args.join(' ')} failed: ${(stderr || stdout || err.message).trim()}`;
      reject(new DmError(what, { code: 'ERR_DM_TOOL', cause: err }));
    });
  });
}

export async function makeFilesystem(device: string, fs: FsType, extraArgs: readonly string[] = []): Promise<void> {
  if (fs === 'ext4') await run('mkfs.ext4', ['-q', '-F', ...EXT4_ARGS, ...extraArgs, device]);
  else await run('mkfs.xfs', ['-q', '-f', ...extraArgs, device]);
}

/**
 * The filesystem UUID as `blkid -p` prints it, read from the superblock:
 * ext4's s_uuid (superblock at 1024, magic 0xEF53 at +56, UUID at +104) or
 * XFS's sb_uuid (superblock at 0, magic 'XFSB', UUID at +32). '' when the
 * device holds neither. Every DeviceSet.open checks the base device's UUID;
 * starting blkid for it cost more than the rest of the open.
 */
export async function filesystemUuid(device: string): Promise<string> {
  const fh = await open(device, 'r');
  try {
    const { buffer: sb, bytesRead } = await fh.read(Buffer.alloc(2048), 0, 2048, 0);
    let at: number | undefined;
    if (bytesRead >= 4 && sb.toString('latin1', 0, 4) === 'XFSB') at = 32;
    else if (bytesRead >= 1024 + 120 && sb.readUInt16LE(1024 + 56) === 0xef53) at = 1024 + 104;
    if (at === undefined) return '';
    const hex = sb.toString('hex', at, at + 16);
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  } finally {
    await fh.close();
  }
}

export interface MountOptions {
  readOnly?: boolean;
  /** Mount options as mount(8) takes them, e.g. ['noatime', 'discard']: generic ones become flags, the rest filesystem data. */
  data?: string[];
}

const C = sys.MOUNT_FLAGS;

/** Generic options are VFS flags, not filesystem data: split them out as mount(8) does. */
const FLAG_OPTIONS: Record<string, { set?: number; clear?: number }> = {
  ro: { set: C.MS_RDONLY },
  rw: { clear: C.MS_RDONLY },
  nosuid: { set: C.MS_NOSUID },
  suid: { clear: C.MS_NOSUID },
  nodev: { set: C.MS_NODEV },
  dev: { clear: C.MS_NODEV },
  noexec: { set: C.MS_NOEXEC },
  exec: { clear: C.MS_NOEXEC },
  sync: { set: C.MS_SYNCHRONOUS },
  async: { clear: C.MS_SYNCHRONOUS },
  dirsync: { set: C.MS_DIRSYNC },
  noatime: { set: C.MS_NOATIME },
  atime: { clear: C.MS_NOATIME },
  nodiratime: { set: C.MS_NODIRATIME },
  diratime: { clear: C.MS_NODIRATIME },
  relatime: { set: C.MS_RELATIME },
  norelatime: { clear: C.MS_RELATIME },
  strictatime: { set: C.MS_STRICTATIME },
  lazytime: { set: C.MS_LAZYTIME },
  nolazytime: { clear: C.MS_LAZYTIME },
  mand: { set: C.MS_MANDLOCK },
  nomand: { clear: C.MS_MANDLOCK },
  defaults: {},
};

/** Mount flags and the filesystem-specific data string for a list of options. */
export function mountFlags(options: readonly string[], readOnly = false): { flags: number; data: string } {
  let flags = readOnly ? C.MS_RDONLY : 0;
  const data: string[] = [];
  for (const o of options) {
    const f = FLAG_OPTIONS[o];
    if (!f) data.push(o);
    else flags = (flags | (f.set ?? 0)) & ~(f.clear ?? 0);
  }
  if (readOnly) flags |= C.MS_RDONLY;
  return { flags, data: data.join(',') };
}

export async function mountDevice(device: string, target: string, fs: FsType, o: MountOptions = {}): Promise<void> {
  await mkdir(target, { recursive: true });
  const options = [...(o.data ?? [])];
  if (fs === 'xfs' && !options.includes('nouuid')) options.push('nouuid'); // snapshots share their origin's UUID
  const { flags, data } = mountFlags(options, o.readOnly);
  await sys.mount(device, target, fs, flags, data);
}

/**
 * Lazy unmount, as Docker did: open files keep the device busy, not the call.
 * With `gone: 'ok'`, a target that is no longer a mount point (EINVAL) or no
 * longer exists (ENOENT) counts as unmounted.
 */
export async function unmountLazily(target: string, o: { gone?: 'ok' } = {}): Promise<void> {
  try {
    await sys.umount(target, { detach: true });
  } catch (e) {
    if (o.gone !== 'ok' || !(e instanceof DmError) || (e.code !== 'EINVAL' && e.code !== 'ENOENT')) throw e;
  }
}

/**
 * Remove an unmounted mount point directory. The kernel then detaches every
 * mount on that directory in every other mount namespace (a container's copy
 * of it), which would otherwise keep the device open. A directory that is not
 * empty (files under the mount point itself) or already gone is left be.
 */
export async function removeMountPoint(target: string): Promise<void> {
  await rmdir(target).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT' && e.code !== 'ENOTEMPTY' && e.code !== 'EBUSY')
      throw new DmError(`cannot remove the mount point ${target}: ${e.code}`, { code: errnoOf(e), cause: e });
  });
}

/** Unmount `target` now (not lazily): for the library's own scratch mounts, which nothing else holds. */
export async function unmountNow(target: string): Promise<void> {
  await sys.umount(target);
}

/** Grow the filesystem on `device` to fill it; it is mounted at a scratch `mountDir` meanwhile (both tools grow online). */
export async function growFilesystem(device: string, fs: FsType, mountDir: string): Promise<void> {
  await mountDevice(device, mountDir, fs);
  try {
    if (fs === 'ext4') await run('resize2fs', [device]);
    else await run('xfs_growfs', [mountDir]);
  } finally {
    await unmountNow(mountDir);
  }
}

/**
 * XFS's retry count for metadata writes that fail with ENOSPC on the mounted
 * device-mapper device dm-`minor` (0: fail at once, -1: the kernel's default,
 * for ever). The sysfs directory exists while the filesystem is mounted.
 */
export async function setXfsNospaceRetries(minor: number, retries: number): Promise<void> {
  const path = `/sys/fs/xfs/dm-${minor}/error/metadata/ENOSPC/max_retries`;
  await writeFile(path, `${retries}\n`).catch((e: NodeJS.ErrnoException) => {
    throw new DmError(`cannot set XFS's ENOSPC retries in ${path}: ${e.code} (the kernel needs XFS error configuration, 4.7 or later)`, {
      code: errnoOf(e),
      syscall: 'write',
      device: `dm-${minor}`,
      cause: e,
    });
  });
}
