// The system calls the library makes besides the device-mapper and loop
// ioctls: mount, umount2, mknod, flock, BLKGETSIZE64, BLKDISCARD, and reading
// many small sysfs files in one trip. Each is traced (NODE_DEBUG=devmapper)
// and fails with a DmError. With dm.ts and loop.ts, the only layer that
// reaches the addon.
import { native, type DevNumber } from './binding';
import { traced, tracedSync, type Hints } from './control';

/** mount(2) flags, for turning mount options into flags (filesystem.ts). */
export const MOUNT_FLAGS = {
  MS_RDONLY: native.sysConstants.MS_RDONLY,
  MS_NOSUID: native.sysConstants.MS_NOSUID,
  MS_NODEV: native.sysConstants.MS_NODEV,
  MS_NOEXEC: native.sysConstants.MS_NOEXEC,
  MS_SYNCHRONOUS: native.sysConstants.MS_SYNCHRONOUS,
  MS_DIRSYNC: native.sysConstants.MS_DIRSYNC,
  MS_NOATIME: native.sysConstants.MS_NOATIME,
  MS_NODIRATIME: native.sysConstants.MS_NODIRATIME,
  MS_RELATIME: native.sysConstants.MS_RELATIME,
  MS_STRICTATIME: native.sysConstants.MS_STRICTATIME,
  MS_LAZYTIME: native.sysConstants.MS_LAZYTIME,
  MS_MANDLOCK: native.sysConstants.MS_MANDLOCK,
} as const;

export function mount(source: string, target: string, fstype: string, flags: number, data: string): Promise<void> {
  return traced('mount', target, () => native.mount(source, target, fstype, flags, data));
}

/** umount2(2); `detach`: MNT_DETACH, a lazy unmount. */
export function umount(target: string, o: { detach?: boolean } = {}): Promise<void> {
  return traced('umount2', target, () => native.umount2(target, o.detach ? native.sysConstants.MNT_DETACH : 0));
}

/**
 * mknod(2) of a block node for `dev`, mode 0660 less the umask, on the JS
 * thread (/dev is in memory). Throws a DmError (EEXIST, ENOENT, ...).
 */
export function mknodBlock(path: string, dev: DevNumber): void {
  tracedSync('mknod', path, () => native.mknodSync(path, native.sysConstants.S_IFBLK | 0o660, dev.major, dev.minor));
}

/** An exclusive flock(2) that fails at once (EWOULDBLOCK) when another open file holds it. */
export function lockExclusiveNow(fd: number, label: string): Promise<void> {
  return traced('flock', label, () => native.flock(fd, native.sysConstants.LOCK_EX | native.sysConstants.LOCK_NB));
}

/** BLKGETSIZE64: a block device's size in bytes. */
export function blockDeviceSize(fd: number, label: string): Promise<number> {
  return traced('BLKGETSIZE64', label, () => native.blkGetSize64(fd));
}

/** BLKDISCARD of `length` bytes from `offset`. */
export function blockDiscard(fd: number, offset: number, length: number, label: string, hints?: Hints): Promise<void> {
  return traced('BLKDISCARD', label, () => native.blkDiscard(fd, offset, length), hints);
}

/** The contents of `dir/name` for each name (null: gone), in one threadpool trip. */
export function readFiles(dir: string, names: string[]): Promise<Array<string | null>> {
  return traced('readFiles', dir, () => native.readFiles(dir, names));
}
