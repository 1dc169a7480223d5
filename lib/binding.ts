// Loads the addon (a prebuild when one matches, else build/Release) and types it.
import { join } from 'node:path';
import nodeGypBuild from 'node-gyp-build';
import { TOOLS, platform, prebuilds } from '../bin/platform';
import { DmError } from './errors';

/** A block device number. */
export interface DevNumber {
  major: number;
  minor: number;
}

export interface NativeTargetSpec {
  start: number;
  length: number;
  type: string;
  params: string;
}

export interface DmIoctlRequest {
  name?: string;
  uuid?: string;
  dev?: DevNumber;
  flags?: number;
  eventNr?: number;
  targets?: NativeTargetSpec[];
  payload?: string;
  message?: string;
  sector?: number;
  bufferSize?: number;
}

export interface DmIoctlReply {
  version: [number, number, number];
  flags: number;
  eventNr: number;
  openCount: number;
  targetCount: number;
  dev: DevNumber;
  name: string;
  uuid: string;
  bufferSize: number;
  growths: number;
  names?: Array<DevNumber & { name: string; eventNr?: number; uuid?: string }>;
  versions?: Array<{ name: string; version: [number, number, number] }>;
  targets?: NativeTargetSpec[];
  deps?: DevNumber[];
  message?: string;
}

export type DmCommand =
  | 'DM_VERSION'
  | 'DM_REMOVE_ALL'
  | 'DM_LIST_DEVICES'
  | 'DM_DEV_CREATE'
  | 'DM_DEV_REMOVE'
  | 'DM_DEV_RENAME'
  | 'DM_DEV_SUSPEND'
  | 'DM_DEV_STATUS'
  | 'DM_DEV_WAIT'
  | 'DM_TABLE_LOAD'
  | 'DM_TABLE_CLEAR'
  | 'DM_TABLE_DEPS'
  | 'DM_TABLE_STATUS'
  | 'DM_LIST_VERSIONS'
  | 'DM_TARGET_MSG'
  | 'DM_DEV_SET_GEOMETRY'
  | 'DM_DEV_ARM_POLL'
  | 'DM_GET_TARGET_VERSION';

export type LoopSimpleIoctl =
  | 'LOOP_CTL_GET_FREE'
  | 'LOOP_CTL_ADD'
  | 'LOOP_CTL_REMOVE'
  | 'LOOP_SET_FD'
  | 'LOOP_CLR_FD'
  | 'LOOP_SET_CAPACITY'
  | 'LOOP_SET_BLOCK_SIZE'
  | 'LOOP_SET_DIRECT_IO';

export interface NativeLoopInfo {
  offset?: number;
  sizeLimit?: number;
  flags?: number;
  fileName?: string;
}

export interface NativeLoopStatus extends Required<NativeLoopInfo> {
  number: number;
  device: DevNumber;
  inode: number;
  rdevice: DevNumber;
}

export interface FdWatcher {
  /** Call `cb` once when the fd turns readable (status < 0: libuv error). */
  start(cb: (status: number) => void): void;
  stop(): void;
  close(): void;
}

/** The dm-ioctl.h flags the addon exports (native/dm_ioctl.cc); a unit test holds the two lists and the header's values together. */
export const DM_FLAG_NAMES = [
  'DM_READONLY_FLAG',
  'DM_SUSPEND_FLAG',
  'DM_PERSISTENT_DEV_FLAG',
  'DM_STATUS_TABLE_FLAG',
  'DM_ACTIVE_PRESENT_FLAG',
  'DM_INACTIVE_PRESENT_FLAG',
  'DM_BUFFER_FULL_FLAG',
  'DM_SKIP_BDGET_FLAG',
  'DM_SKIP_LOCKFS_FLAG',
  'DM_NOFLUSH_FLAG',
  'DM_QUERY_INACTIVE_TABLE_FLAG',
  'DM_UEVENT_GENERATED_FLAG',
  'DM_UUID_FLAG',
  'DM_SECURE_DATA_FLAG',
  'DM_DATA_OUT_FLAG',
  'DM_DEFERRED_REMOVE',
  'DM_INTERNAL_SUSPEND_FLAG',
] as const;
export type DmFlagName = (typeof DM_FLAG_NAMES)[number];

/** The loop.h flags the addon exports (native/loop.cc). */
export const LOOP_FLAG_NAMES = ['LO_FLAGS_READ_ONLY', 'LO_FLAGS_AUTOCLEAR', 'LO_FLAGS_PARTSCAN', 'LO_FLAGS_DIRECT_IO'] as const;
export type LoopFlagName = (typeof LOOP_FLAG_NAMES)[number];

export interface Native {
  dmIoctl(fd: number, command: DmCommand, request: DmIoctlRequest): Promise<DmIoctlReply>;
  /** Several ioctls in order in one threadpool trip; a failure carries `step`, the index of the failed one, and `replies`, those before it. */
  dmIoctlSeq(fd: number, steps: Array<[DmCommand, DmIoctlRequest]>): Promise<DmIoctlReply[]>;
  dmFlags: Record<DmFlagName, number>;
  loopIoctl(fd: number, op: LoopSimpleIoctl, arg?: number): Promise<number>;
  loopSetStatus(fd: number, info: NativeLoopInfo): Promise<void>;
  loopGetStatus(fd: number): Promise<NativeLoopStatus>;
  /**
   * Open `file`, LOOP_CTL_GET_FREE, open /dev/loopN, LOOP_CONFIGURE, close:
   * one trip. `hold` keeps the device open (its fd in the reply), `status`
   * adds LOOP_GET_STATUS64's flags. A failure carries `step` (0 open file,
   * 1 get free, 2 open device, 3 configure) and `number` once known.
   */
  loopAttach(
    controlFd: number,
    file: string,
    openFlags: number,
    config: NativeLoopInfo & { blockSize?: number },
    options: { hold: boolean; status: boolean },
  ): Promise<DevNumber & { number: number; fd: number; flags: number }>;
  /** Open the loop device at `path`, one simple ioctl, close: one trip. An open failure (or a node that is not a loop device's: ENODEV) has syscall 'open'. */
  loopPathIoctl(path: string, openFlags: number, op: LoopSimpleIoctl, arg?: number): Promise<number>;
  /**
   * Open the loop device at `path` read-only, LOOP_GET_STATUS64, close, then read the attributes `names` under
   * `sysfsDir` (`files`, null where unreadable): one trip; failures as loopPathIoctl's.
   */
  loopPathStatus(path: string, sysfsDir?: string, names?: readonly string[]): Promise<NativeLoopStatus & { files: Array<string | null> }>;
  /** An empty trip through the addon's executor (the benchmark's fixed cost of a call). */
  nop(): Promise<void>;
  loopFlags: Record<LoopFlagName, number>;
  mknod(path: string, mode: number, major: number, minor: number): Promise<void>;
  /** mknod on the JS thread (for /dev, which is in memory). */
  mknodSync(path: string, mode: number, major: number, minor: number): void;
  mount(source: string, target: string, fstype: string, flags: number, data: string): Promise<void>;
  umount2(target: string, flags: number): Promise<void>;
  flock(fd: number, operation: number): Promise<void>;
  blkGetSize64(fd: number): Promise<number>;
  blkDiscard(fd: number, offset: number, length: number): Promise<void>;
  /** The contents of `dir/name` for each name (null: gone), in one threadpool trip. */
  readFiles(dir: string, names: string[]): Promise<Array<string | null>>;
  sysConstants: Record<
    | 'S_IFBLK'
    | 'S_IFCHR'
    | 'LOCK_SH'
    | 'LOCK_EX'
    | 'LOCK_NB'
    | 'LOCK_UN'
    | 'MS_RDONLY'
    | 'MS_NOSUID'
    | 'MS_NODEV'
    | 'MS_NOEXEC'
    | 'MS_REMOUNT'
    | 'MS_BIND'
    | 'MS_SYNCHRONOUS'
    | 'MS_DIRSYNC'
    | 'MS_NOATIME'
    | 'MS_NODIRATIME'
    | 'MS_RELATIME'
    | 'MS_STRICTATIME'
    | 'MS_LAZYTIME'
    | 'MS_MANDLOCK'
    | 'MNT_FORCE'
    | 'MNT_DETACH'
    | 'UMOUNT_NOFOLLOW',
    number
  >;
  FdWatcher: new (fd: number) => FdWatcher;
}

/** node-gyp-build's addon, or ERR_DM_NO_BINARY naming the platform, libc and the prebuilds present. */
function load(root: string): unknown {
  try {
    return nodeGypBuild(root);
  } catch (e) {
    const why = e instanceof Error && !e.message.startsWith('No native build') ? ` (${e.message.split('\n')[0]})` : '';
    throw new DmError(
      `no native addon loads on ${platform()}${why}: the package's prebuilds are ${prebuilds(root)} ` +
        `and none was built from source on install; install ${TOOLS}, then run npm rebuild devmapper`,
      { code: 'ERR_DM_NO_BINARY', cause: e },
    );
  }
}

// lib/ and dist/ both sit one level below the package root. DEVMAPPER_ADDON
// names another build to load instead (the sanitizer build: npm run build:asan, run by npm test).
export const native: Native = (process.env.DEVMAPPER_ADDON ? require(process.env.DEVMAPPER_ADDON) : load(join(__dirname, '..'))) as Native;
