// DeviceSet's options: their types, and parsing them once, before anything
// is touched, into the Settings the set runs with.
import { directLvmFromSetOptions, DIRECT_LVM_SET_KEYS, type DirectLvmSetOptions, type DirectLvmOptions } from '../direct-lvm';
import { invalidArg } from '../errors';
import type { FsType } from '../filesystem';
import { checkProgress, type ProgressHandler } from '../progress';
import { parseSize } from '../size';
import { checkBoolean, checkName, checkOptions, checkPath, checkUint } from '../validate';
import { resolve as resolvePath } from 'node:path';

const GiB = 1024 ** 3;

/** Which pool a set (or a snapshotter) uses, and how it is made: loop-backed by default. */
export interface PoolChoice {
  /** Loop-backed pool settings (Docker's dm.loopdatasize, dm.loopmetadatasize, dm.blocksize). */
  dataSize?: number | string;
  metadataSize?: number | string;
  blockSize?: number | string;
  /** Block devices for a pool it creates (dm.datadev / dm.metadatadev). */
  dataDevice?: string;
  metadataDevice?: string;
  /** An existing pool to use (dm.thinpooldev). */
  poolName?: string;
}

export interface DeviceSetOptions extends DirectLvmSetOptions, PoolChoice {
  /** Directory holding devicemapper/ (loop files), metadata/ and mnt/. */
  root: string;
  /**
   * 'devmapper' (default): the library's own records. 'docker': a store that
   * Docker's devicemapper driver left under root (/var/lib/docker/devicemapper),
   * opened read-only (see lib/device-set/docker-store.ts).
   */
  layout?: 'devmapper' | 'docker';
  /** Layout 'docker' only, where it is the default and the only choice: refuse every change with EROFS. */
  readOnly?: boolean;
  /**
   * Size of the base device, and so of every device by default (default 10G
   * for a new set). Given larger on a later open, it grows the base; given
   * smaller, the open fails; left out, the base keeps its size.
   */
  baseSize?: number | string;
  /** Filesystem of the base device (default ext4). */
  fs?: FsType;
  /** Extra mkfs arguments for the base filesystem. */
  mkfsArgs?: string[];
  /** Extra mount options for every mount, e.g. ['noatime']. */
  mountOptions?: string[];
  /** Refuse to create devices when less than this percentage of data or metadata is free (default 10). */
  minFreeSpace?: number;
  /** Remove busy devices when they are released rather than failing (dm.use_deferred_removal). */
  deferredRemoval?: boolean;
  /** Delete busy thin devices later, in the background (dm.use_deferred_deletion). */
  deferredDeletion?: boolean;
  /** Discard a device's blocks before deleting it, so a loop-backed pool returns space to the host (dm.blkdiscard). */
  discard?: boolean;
  /** How often deferred deletions are retried, in ms (default 30000). */
  cleanupIntervalMs?: number;
  /** Told when a long step starts and ends (making or growing a filesystem, discarding). */
  onProgress?: ProgressHandler;
  /**
   * XFS only (Docker's dm.xfs_nospace_max_retries): how many times XFS
   * retries a metadata write the pool refused for lack of space, set on each
   * device this set mounts (/sys/fs/xfs/dm-N/error/metadata/ENOSPC/max_retries).
   * 0 fails at once; left out, the kernel's default (-1: retry for ever, so a
   * full pool hangs the filesystem).
   */
  xfsNospaceMaxRetries?: number;
}

/** Options of DeviceSet.create. */
export interface CreateOptions {
  /** Id of the device to snapshot (default: the base device). */
  parent?: string;
  /** Bytes (or a size string); larger than the parent grows the device and its filesystem. */
  size?: number | string;
}

export const OPTION_KEYS = [
  'root',
  'baseSize',
  'fs',
  'mkfsArgs',
  'mountOptions',
  'dataSize',
  'metadataSize',
  'blockSize',
  'dataDevice',
  'metadataDevice',
  'layout',
  'readOnly',
  'poolName',
  'minFreeSpace',
  'deferredRemoval',
  'deferredDeletion',
  'discard',
  'cleanupIntervalMs',
  'onProgress',
  'xfsNospaceMaxRetries',
  ...DIRECT_LVM_SET_KEYS,
] as const;

export function checkStrings(value: unknown, field: string): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string' && v.length > 0 && !v.includes('\0'))) {
    throw invalidArg(field, 'expected an array of non-empty strings');
  }
  return value as string[];
}

/** The options of an open set, checked. */
export interface Settings {
  root: string;
  baseSize: number;
  fs: FsType;
  mkfsArgs: string[];
  mountOptions: string[];
  minFreeSpace: number;
  deferredRemoval: boolean;
  deferredDeletion: boolean;
  discard: boolean;
  cleanupIntervalMs: number;
  baseSizeGiven: boolean;
  progress: ProgressHandler | undefined;
  xfsNospaceMaxRetries: number | undefined;
}

/** Options checked, with the Settings they give; nothing is touched yet. */
export interface ParsedOptions {
  settings: Settings;
  /** The options as given (pool choice, sizes, layout), checked. */
  given: Partial<DeviceSetOptions>;
  /** direct-lvm's set-up, when asked for. */
  directLvm: DirectLvmOptions | undefined;
}

/** Check every option, before any file or device is touched. */
export function parseOptions(options: DeviceSetOptions): ParsedOptions {
  const o = checkOptions<DeviceSetOptions>(options, 'options', OPTION_KEYS);
  const root = resolvePath(checkPath(o.root, 'root'));
  const fs = o.fs ?? 'ext4';
  if (fs !== 'ext4' && fs !== 'xfs') throw invalidArg('fs', `'${String(fs)}' is not 'ext4' or 'xfs'`);
  const settings: Settings = {
    root,
    baseSize: parseSize(o.baseSize ?? 10 * GiB, 'baseSize'),
    baseSizeGiven: o.baseSize !== undefined,
    fs,
    mkfsArgs: checkStrings(o.mkfsArgs, 'mkfsArgs'),
    mountOptions: checkStrings(o.mountOptions, 'mountOptions'),
    minFreeSpace: o.minFreeSpace === undefined ? 10 : checkUint(o.minFreeSpace, 'minFreeSpace', { max: 99 }),
    deferredRemoval: checkBoolean(o.deferredRemoval, 'deferredRemoval') ?? false,
    deferredDeletion: checkBoolean(o.deferredDeletion, 'deferredDeletion') ?? false,
    discard: checkBoolean(o.discard, 'discard') ?? false,
    cleanupIntervalMs: o.cleanupIntervalMs === undefined ? 30_000 : checkUint(o.cleanupIntervalMs, 'cleanupIntervalMs', { min: 10 }),
    progress: checkProgress(o.onProgress),
    xfsNospaceMaxRetries:
      o.xfsNospaceMaxRetries === undefined ? undefined : checkUint(o.xfsNospaceMaxRetries, 'xfsNospaceMaxRetries', { max: 2 ** 31 - 1 }),
  };
  if (settings.baseSize % 512 !== 0 || settings.baseSize < 16 * 1024 * 1024)
    throw invalidArg('baseSize', `${settings.baseSize} bytes: at least 16M and a multiple of 512`);
  if (o.poolName !== undefined) checkName(o.poolName, 'poolName');
  if ((o.dataDevice === undefined) !== (o.metadataDevice === undefined))
    throw invalidArg('dataDevice', 'give both dataDevice and metadataDevice, or neither');
  if (o.poolName !== undefined && o.dataDevice !== undefined)
    throw invalidArg('poolName', 'give poolName or dataDevice/metadataDevice, not both');
  if (o.layout !== undefined && o.layout !== 'devmapper' && o.layout !== 'docker') {
    throw invalidArg('layout', `'${String(o.layout)}' is not 'devmapper' or 'docker'`);
  }
  if (checkBoolean(o.readOnly, 'readOnly') && o.layout !== 'docker') throw invalidArg('readOnly', "only layout 'docker' opens read-only");
  const directLvm = directLvmFromSetOptions(o);
  if (o.layout === 'docker' && directLvm)
    throw invalidArg('directLvmDevice', "not with layout 'docker': a Docker store is opened as Docker left it");
  return { settings, given: o, directLvm };
}

/** XFS's retry option needs the set's filesystem to be xfs (known once its record is read). */
export function checkFsOptions(settings: Settings, fs: FsType): void {
  if (settings.xfsNospaceMaxRetries !== undefined && fs !== 'xfs')
    throw invalidArg('xfsNospaceMaxRetries', `applies to xfs, and the set's filesystem is ${fs}`);
}
