// Filesystems on thin devices: make, probe the UUID, grow online, mount and
// unmount (the mount syscalls come from the addon; mkfs, blkid and the grow
// tools are e2fsprogs / xfsprogs / util-linux).
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { native } from './binding';
import { traced } from './control';
import { DmError } from './errors';

export type FsType = 'ext4' | 'xfs';

/** Docker's mkfs.ext4 options: no discard pass, no lazy init left running in the kernel. */
const EXT4_ARGS = ['-E', 'nodiscard,lazy_itable_init=0,lazy_journal_init=0'];

export function run(tool: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(tool, args, { encoding: 'utf8' }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
      const what = missing ? `${tool} is not installed (Debian: ${tool.startsWith('mkfs.xfs') || tool.startsWith('xfs') ? 'xfsprogs' : tool === 'blkid' ? 'util-linux' : 'e2fsprogs'})` : `${tool} ${args.join(' ')} failed: ${(stderr || stdout || err.message).trim()}`;
      reject(new DmError(what, { code: 'ERR_DM_TOOL', cause: err }));
    });
  });
}

export async function makeFilesystem(device: string, fs: FsType, extraArgs: readonly string[] = []): Promise<void> {
  if (fs === 'ext4') await run('mkfs.ext4', ['-q', '-F', ...EXT4_ARGS, ...extraArgs, device]);
  else await run('mkfs.xfs', ['-q', '-f', ...extraArgs, device]);
}

/** The filesystem UUID, read from the superblock (blkid -p bypasses its cache). */
export async function filesystemUuid(device: string): Promise<string> {
  return (await run('blkid', ['-p', '-s', 'UUID', '-o', 'value', device])).trim();
}

export interface MountOptions {
  readOnly?: boolean;
  /** Comma-separated mount data, e.g. 'discard,noatime'. */
  data?: string[];
}

export async function mountDevice(device: string, target: string, fs: FsType, o: MountOptions = {}): Promise<void> {
  await mkdir(target, { recursive: true });
  const data = [...(o.data ?? [])];
  if (fs === 'xfs' && !data.includes('nouuid')) data.push('nouuid'); // snapshots share their origin's UUID
  const flags = o.readOnly ? native.sysConstants.MS_RDONLY : 0;
  await traced('mount', target, () => native.mount(device, target, fs, flags, data.join(',')));
}

/** Lazy unmount, as Docker did: open files keep the device busy, not the call. */
export async function unmountLazily(target: string): Promise<void> {
  await traced('umount2', target, () => native.umount2(target, native.sysConstants.MNT_DETACH));
}

/** Grow the filesystem on `device` to fill it; it is mounted at a scratch `mountDir` meanwhile (both tools grow online). */
export async function growFilesystem(device: string, fs: FsType, mountDir: string): Promise<void> {
  await mountDevice(device, mountDir, fs);
  try {
    if (fs === 'ext4') await run('resize2fs', [device]);
    else await run('xfs_growfs', [mountDir]);
  } finally {
    await traced('umount2', mountDir, () => native.umount2(mountDir, 0));
  }
}
