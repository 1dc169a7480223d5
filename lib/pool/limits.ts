// Thin pools' limits, Docker's defaults, the options their calls take, and
// the checks of those options (run before any ioctl).
import { invalidArg } from '../errors';
import type { ProgressHandler } from '../progress';
import { parseSize } from '../size';
import { checkBoolean, checkName, checkOptions, checkUint, type DmName, type Sectors, type ThinId } from '../validate';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
export const SECTOR = 512;
/** Thin-pool metadata is counted in 4 KiB blocks. */
export const METADATA_BLOCK_SIZE = 4096;
/** The kernel uses at most this much metadata (THIN_METADATA_MAX_SECTORS, about 15.9 GiB). */
export const MAX_METADATA_SIZE = 255 * (1 << 14) * 8 * SECTOR;
export const MIN_METADATA_SIZE = 2 * MiB;
export const MIN_BLOCK_SIZE = 64 * KiB;
export const MAX_BLOCK_SIZE = GiB;
/** Thin device ids are 24-bit. */
export const MAX_THIN_ID = 2 ** 24 - 1;

/** Docker's devicemapper defaults. */
export const THIN_POOL_DEFAULTS = {
  dataSize: 100 * GiB,
  metadataSize: 2 * GiB,
  blockSize: 64 * KiB,
  lowWaterMark: 32768,
  prefix: 'devmapper',
} as const;

/** The thin-pool table's settings, shared by the pool factories. */
export interface PoolTableOptions {
  /** Data block size: 64K..1G, a multiple of 64K (default 64K). */
  blockSize?: number | string;
  /** Free data blocks below which the kernel raises an event (default 32768, at most a tenth of the pool's blocks). */
  lowWaterMark?: number;
  /** Fail writes at once when the pool is full instead of queueing them for 60 s (default false). */
  errorIfNoSpace?: boolean;
  /** Zero newly provisioned blocks (default false: Docker's skip_block_zeroing). */
  blockZeroing?: boolean;
}

/** Options of ThinPool.createLoopBacked. */
export interface LoopBackedOptions extends PoolTableOptions {
  /** Directory for the `data` and `metadata` sparse files. */
  dir: string;
  /** Pool name; default `<prefix>-MAJ:MIN-INO-pool` of `dir`, as Docker named it. */
  name?: string;
  /** Name prefix for the default name (default 'devmapper'). */
  prefix?: string;
  /**
   * Size of a new data file (default 100G). Given for an existing pool, a
   * larger size grows it (file, loop device, pool table: Docker's
   * dm.loopdatasize raised across a restart); a smaller one is refused;
   * left out, the file keeps its size.
   */
  dataSize?: number | string;
  /** Size of a new metadata file (default 2G); given for an existing pool, as `dataSize`. */
  metadataSize?: number | string;
}

/** Options of ThinPool.create (a pool on given block devices). */
export interface DirectOptions extends PoolTableOptions {
  name: string;
  /** Block devices for data and metadata (direct-lvm). */
  dataDevice: string;
  metadataDevice: string;
  /** Zero the metadata device's first 4 KiB so the kernel formats fresh metadata (default false: reuse what is there). */
  zeroMetadata?: boolean;
}

/** Options of ThinPool.resize. */
export interface ResizeOptions {
  /** New size of the data file (loop-backed pools only). */
  dataSize?: number | string;
  /** New size of the metadata file (loop-backed pools only). */
  metadataSize?: number | string;
  /** New low water mark in data blocks. */
  lowWaterMark?: number;
  onProgress?: ProgressHandler;
}

/** Options of ThinPool.activate. */
export interface ActivateOptions {
  /** Device-mapper name of the new device. */
  name: string;
  /** Size in bytes (or a size string); a multiple of 512. */
  size: number | string;
  readOnly?: boolean;
}

/** Options of ThinPool.createThinDevice and createSnapshotDevice. */
export interface ThinDeviceOptions extends ActivateOptions {
  /** Thin id for the new device; the next free one when left out. */
  thinId?: number;
}

/**
 * Options of createThin, createSnapshot and deleteThin: `transactionId` moves
 * the pool's transaction id from `from` to `to` in the same trip as the
 * change (`set_transaction_id`), the commit point of a caller's own records
 * (Docker and containerd keep theirs so). The kernel refuses it unless the
 * pool is at `from`.
 */
export interface ThinChangeOptions {
  transactionId?: { from: number; to: number };
}

/** ThinChangeOptions validated: the transaction id move, if any. */
export function checkThinChange(options: unknown): { from: number; to: number } | undefined {
  const t = checkOptions<ThinChangeOptions>(options, 'options', ['transactionId']).transactionId;
  if (t === undefined) return undefined;
  const { from, to } = checkOptions<{ from: number; to: number }>(t, 'options.transactionId', ['from', 'to']);
  return { from: checkUint(from, 'options.transactionId.from'), to: checkUint(to, 'options.transactionId.to') };
}

/** An activation's name, read-only flag and length in sectors, validated. */
export function checkActivate(o: Partial<ActivateOptions>): { name: DmName; readOnly: boolean; length: Sectors } {
  const name = checkName(o.name, 'options.name');
  const size = parseSize(o.size, 'options.size');
  if (size === 0 || size % SECTOR !== 0) throw invalidArg('options.size', `${size} bytes: must be a positive multiple of 512`);
  return { name, readOnly: checkBoolean(o.readOnly, 'options.readOnly') ?? false, length: (size / SECTOR) as Sectors };
}

export function checkBlockSize(value: unknown): number {
  const bytes = parseSize(value ?? THIN_POOL_DEFAULTS.blockSize, 'blockSize');
  if (bytes < MIN_BLOCK_SIZE || bytes > MAX_BLOCK_SIZE || bytes % MIN_BLOCK_SIZE !== 0) {
    throw invalidArg('blockSize', `${bytes} bytes: a thin pool's block size is 64K..1G and a multiple of 64K`);
  }
  return bytes;
}

export function checkMetadataSize(bytes: number, field: string): number {
  if (bytes < MIN_METADATA_SIZE || bytes > MAX_METADATA_SIZE) {
    throw invalidArg(field, `${bytes} bytes: thin-pool metadata must be 2M..${(MAX_METADATA_SIZE / GiB).toFixed(1)}G`);
  }
  return bytes;
}

export function checkThinId(id: unknown, field = 'thinId'): ThinId {
  return checkUint(id, field, { max: MAX_THIN_ID }) as ThinId;
}

/**
 * The low water mark a pool of `dataBlocks` gets when none is given: Docker's
 * 32768 blocks (2 GiB at 64K), but no more than a tenth of the pool, so a
 * small pool does not start below its own mark (a 128 MiB pool of 2048
 * blocks gets 204).
 */
export function defaultLowWaterMark(dataBlocks: number): number {
  return Math.min(THIN_POOL_DEFAULTS.lowWaterMark, Math.max(1, Math.floor(dataBlocks / 10)));
}

/** The pool table's options, checked; `lowWaterMark` undefined: defaultLowWaterMark of the data size, once known. */
export function checkPoolTable(o: PoolTableOptions) {
  const blockBytes = checkBlockSize(o.blockSize);
  const lowWaterMark = o.lowWaterMark === undefined ? undefined : checkUint(o.lowWaterMark, 'lowWaterMark');
  const features: string[] = [];
  if (!checkBoolean(o.blockZeroing, 'blockZeroing')) features.push('skip_block_zeroing');
  if (checkBoolean(o.errorIfNoSpace, 'errorIfNoSpace')) features.push('error_if_no_space');
  return { blockSectors: blockBytes / SECTOR, lowWaterMark, features };
}

export const TABLE_KEYS = ['blockSize', 'lowWaterMark', 'errorIfNoSpace', 'blockZeroing'] as const;

/** Whole blocks of `bytes`, in sectors: the pool's length. */
export const poolSectors = (bytes: number, blockSectors: number) => (Math.floor(bytes / SECTOR / blockSectors) * blockSectors) as Sectors;
