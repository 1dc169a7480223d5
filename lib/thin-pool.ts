// Thin pools: creation on loop-backed sparse files (Docker's loop-lvm), on
// given devices (direct-lvm) or by opening an existing pool; thin devices and
// snapshots inside it; status, usage, resize and teardown.
import { mkdir, open, stat, statfs, truncate, unlink } from 'node:fs/promises';
import { join, resolve as resolvePath } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { inspect, type InspectOptionsStylized } from 'node:util';
import type { DevNumber, DmIoctlReply } from './binding';
import * as batch from './batch';
import * as dm from './dm';
import { DmError, invalidArg } from './errors';
import { humanSize } from './format';
import { ensureBlockNode, mapperPath, nodeDev, removeNode } from './nodes';
import * as loop from './loop';
import { checkProgress, step, type ProgressHandler } from './progress';
import { parseSize } from './size';
import { blockName, dmHolderMinors } from './sysfs';
import { thin as thinGrammar } from './targets/thin';
import { thinPool as poolGrammar, type ThinPoolHealthyStatus, type ThinPoolMode, type ThinPoolParams } from './targets/thin-pool';
import * as msg from './targets/thin-pool-messages';
import type { PoolMessage } from './targets/thin-pool-messages';
import * as sys from './sys';
import { Undo } from './undo';
import { PoolWatcher, type WatchOptions } from './pool-watch';
import { checkBoolean, checkName, checkOptions, checkPath, checkUint } from './validate';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const SECTOR = 512;
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

export interface PoolTableOptions {
  /** Data block size: 64K..1G, a multiple of 64K (default 64K). */
  blockSize?: number | string;
  /** Free data blocks below which the kernel raises an event (default 32768). */
  lowWaterMark?: number;
  /** Fail writes at once when the pool is full instead of queueing them for 60 s (default false). */
  errorIfNoSpace?: boolean;
  /** Zero newly provisioned blocks (default false: Docker's skip_block_zeroing). */
  blockZeroing?: boolean;
}

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

export interface DirectOptions extends PoolTableOptions {
  name: string;
  /** Block devices for data and metadata (direct-lvm). */
  dataDevice: string;
  metadataDevice: string;
  /** Zero the metadata device's first 4 KiB so the kernel formats fresh metadata (default false: reuse what is there). */
  zeroMetadata?: boolean;
}

/**
 * Conditions a pool can be in that its user must act on, each the name of
 * the event `watch()` emits when it appears:
 * - lowWater: free data blocks at or below the table's low water mark (the
 *   kernel raises its event there);
 * - metadataLowWater: free metadata blocks below the kernel's metadata low
 *   watermark (min(4 MiB, a quarter of the metadata device));
 * - outOfDataSpace, readOnly, fail: the pool's mode;
 * - needsCheck: the metadata must be checked (thin_check) before the pool can
 *   be written again.
 */
export type PoolAlert = 'lowWater' | 'metadataLowWater' | 'outOfDataSpace' | 'readOnly' | 'fail' | 'needsCheck';

/** The pool's status: the thin-pool status fields, with a failed pool as mode 'fail'. */
export type PoolStatus = Omit<ThinPoolHealthyStatus, 'state' | 'mode'> & {
  /** 'fail' when the kernel reports the pool failed (the counters are then 0). */
  mode: ThinPoolMode | 'fail';
  /** The conditions that hold now, in the order of {@link PoolAlert}. */
  alerts: PoolAlert[];
  /** The kernel's status text, as read. */
  raw: string;
};

/** Which alerts a status shows, given the table's low water mark (in data blocks). */
export function poolAlerts(s: Omit<PoolStatus, 'alerts' | 'raw'>, lowWaterMark: number): PoolAlert[] {
  if (s.mode === 'fail') return ['fail'];
  const alerts: PoolAlert[] = [];
  if (s.totalDataBlocks - s.usedDataBlocks <= lowWaterMark) alerts.push('lowWater');
  if (s.metadataLowWatermark !== undefined && s.totalMetadataBlocks - s.usedMetadataBlocks < s.metadataLowWatermark) alerts.push('metadataLowWater');
  if (s.mode === 'out_of_data_space') alerts.push('outOfDataSpace');
  if (s.mode === 'ro') alerts.push('readOnly');
  if (s.needsCheck) alerts.push('needsCheck');
  return alerts;
}

export interface SpaceUsage {
  /** Bytes. */
  used: number;
  total: number;
  /**
   * Bytes that can still be written: total − used, and for a loop-backed
   * pool at most what the filesystem holding the sparse file has free (as
   * Docker reported it): a 100G file on a disk with 2G free has 2G available.
   */
  available: number;
  /** Loop-backed pools: free bytes of the filesystem that holds the file. */
  hostFree?: number;
}

/** What the pool has mapped of one thin device (moby's GetDeviceStatus, containerd's Usage). */
export interface ThinUsage {
  thinId: number;
  mappedSectors: number;
  /** mappedSectors × 512. */
  mappedBytes: number;
  /** null when nothing is mapped yet. */
  highestMappedSector: number | null;
  /** Where the figures came from: the id's active device, or a short read-only activation. */
  source: 'active' | 'activation';
}

export interface PoolUsage {
  data: SpaceUsage;
  metadata: SpaceUsage;
}

export interface ResizeOptions {
  /** New size of the data file (loop-backed pools only). */
  dataSize?: number | string;
  /** New size of the metadata file (loop-backed pools only). */
  metadataSize?: number | string;
  /** New low water mark in data blocks. */
  lowWaterMark?: number;
  onProgress?: ProgressHandler;
}

export interface LoopBacking {
  dir: string;
  dataFile: string;
  metadataFile: string;
}

/** deleteThin's bound for a thin id the kernel still holds open: libdevmapper's remove-retry bound. */
const DELETE_RETRY = { attempts: 25, delayMs: 200 };

/** Per pool name, shared by every ThinPool object for it: its devices as last seen (see ThinPool.seen). */
const seen = new Map<string, Map<number, { name: string; id: number }>>();

/** Per-pool serialisation of changes, shared by every ThinPool object for that name. */
const locks = new Map<string, Promise<unknown>>();

function serialised<T>(key: string, body: () => Promise<T>): Promise<T> {
  const prior = locks.get(key) ?? Promise.resolve();
  const run = prior.then(body, body);
  const tail = run.catch(() => undefined);
  locks.set(key, tail);
  void tail.then(() => {
    if (locks.get(key) === tail) locks.delete(key);
  });
  return run;
}

/** An activation's name, read-only flag and length in sectors, validated. */
function checkActivate(o: Partial<ActivateOptions>): { name: string; readOnly: boolean; length: number } {
  const name = checkName(o.name, 'options.name');
  const size = parseSize(o.size, 'options.size');
  if (size === 0 || size % SECTOR !== 0) throw invalidArg('options.size', `${size} bytes: must be a positive multiple of 512`);
  return { name, readOnly: checkBoolean(o.readOnly, 'options.readOnly') ?? false, length: size / SECTOR };
}

function checkBlockSize(value: unknown): number {
  const bytes = parseSize(value ?? THIN_POOL_DEFAULTS.blockSize, 'blockSize');
  if (bytes < MIN_BLOCK_SIZE || bytes > MAX_BLOCK_SIZE || bytes % MIN_BLOCK_SIZE !== 0) {
    throw invalidArg('blockSize', `${bytes} bytes: a thin pool's block size is 64K..1G and a multiple of 64K`);
  }
  return bytes;
}

function checkMetadataSize(bytes: number, field: string): number {
  if (bytes < MIN_METADATA_SIZE || bytes > MAX_METADATA_SIZE) {
    throw invalidArg(field, `${bytes} bytes: thin-pool metadata must be 2M..${(MAX_METADATA_SIZE / GiB).toFixed(1)}G`);
  }
  return bytes;
}

export function checkThinId(id: unknown, field = 'id'): number {
  return checkUint(id, field, { max: MAX_THIN_ID });
}

function checkPoolTable(o: PoolTableOptions) {
  const blockBytes = checkBlockSize(o.blockSize);
  const lowWaterMark = o.lowWaterMark === undefined ? THIN_POOL_DEFAULTS.lowWaterMark : checkUint(o.lowWaterMark, 'lowWaterMark');
  const features: string[] = [];
  if (!checkBoolean(o.blockZeroing, 'blockZeroing')) features.push('skip_block_zeroing');
  if (checkBoolean(o.errorIfNoSpace, 'errorIfNoSpace')) features.push('error_if_no_space');
  return { blockSectors: blockBytes / SECTOR, lowWaterMark, features };
}

const TABLE_KEYS = ['blockSize', 'lowWaterMark', 'errorIfNoSpace', 'blockZeroing'] as const;

/** Read the table of the device with number `major`:`minor` (the pool's major: device-mapper's). */
const tableStep = (pool: DevNumber, minor: number) => batch.readTable({ dev: { major: pool.major, minor } });

/** Whole blocks of `bytes`, in sectors: the pool's length. */
const poolSectors = (bytes: number, blockSectors: number) => Math.floor(bytes / SECTOR / blockSectors) * blockSectors;

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function zeroHeader(path: string): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.write(Buffer.alloc(METADATA_BLOCK_SIZE), 0, METADATA_BLOCK_SIZE, 0);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function deviceSize(path: string): Promise<number> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw new DmError(`cannot open ${path}: ${(e as NodeJS.ErrnoException).code}`, { code: (e as NodeJS.ErrnoException).code ?? 'EIO', syscall: 'open', device: path, cause: e });
  }
  try {
    const st = await fh.stat();
    if (!st.isBlockDevice()) throw invalidArg('device', `${path} is not a block device`);
    return await sys.blockDeviceSize(fh.fd, path);
  } finally {
    await fh.close();
  }
}

/** Docker's pool name: `<prefix>-MAJ:MIN-INO-pool` of the directory. */
export async function defaultPoolName(dir: string, prefix: string = THIN_POOL_DEFAULTS.prefix): Promise<string> {
  const st = await stat(dir, { bigint: true });
  const major = Number((st.dev >> 8n) & 0xfffn) | Number((st.dev >> 32n) & ~0xfffn);
  const minor = Number(st.dev & 0xffn) | Number((st.dev >> 12n) & ~0xffn);
  return checkName(`${prefix}-${major}:${minor}-${st.ino}-pool`, 'name');
}

export interface ActivateOptions {
  /** Device-mapper name of the new device. */
  name: string;
  /** Size in bytes (or a size string); a multiple of 512. */
  size: number | string;
  readOnly?: boolean;
}

export interface ThinDeviceOptions extends ActivateOptions {
  /** Thin id for the new device; the next free one when left out. */
  id?: number;
}

/** An active thin device: its device-mapper info and the thin id it maps. */
export interface ThinDevice extends dm.DeviceInfo {
  id: number;
}

export class ThinPool {
  private constructor(
    /** Device-mapper name of the pool. */
    readonly name: string,
    /** Its node, /dev/mapper/NAME. */
    readonly path: string,
    private params: ThinPoolParams,
    private sectors: number,
    /** The sparse files behind a loop-backed pool. */
    readonly loopBacking: LoopBacking | undefined,
  ) {}

  /** The pool device's number as last seen; activeDevices() checks it against the kernel. */
  private dev: DevNumber | undefined;
  /** The devices on the pool as last seen, by minor, with the thin id each maps: a guess that snapshots check. */
  private get seen(): Map<number, { name: string; id: number }> {
    let m = seen.get(this.name);
    if (!m) seen.set(this.name, (m = new Map()));
    return m;
  }

  /** Data block size in bytes. */
  get blockSize(): number {
    return this.params.dataBlockSectors * SECTOR;
  }

  /** Size of the data area in bytes. */
  get dataSize(): number {
    return this.sectors * SECTOR;
  }

  get lowWaterMark(): number {
    return this.params.lowWaterMark;
  }

  /** Feature arguments of the pool table, in order. */
  get features(): readonly string[] {
    return this.params.features;
  }

  /** How the REPL and console.log show a pool: sizes for people. */
  [inspect.custom](_depth: number, options: InspectOptionsStylized): string {
    const o = { path: this.path, blockSize: humanSize(this.blockSize), dataSize: humanSize(this.dataSize), lowWaterMark: this.lowWaterMark, features: this.features, dataDevice: this.params.dataDevice, metadataDevice: this.params.metadataDevice, ...(this.loopBacking ? { loopBacking: this.loopBacking } : {}) };
    return `ThinPool '${this.name}' ${inspect(o, { ...options, depth: 2 })}`;
  }

  /**
   * A pool on `dir/data` and `dir/metadata` sparse files attached to loop
   * devices (created on first use). If the pool device already exists it is
   * opened; if the files exist they are reattached without wiping.
   */
  static async createLoopBacked(options: LoopBackedOptions): Promise<ThinPool> {
    const o = checkOptions<LoopBackedOptions>(options, 'options', ['dir', 'name', 'prefix', 'dataSize', 'metadataSize', ...TABLE_KEYS]);
    const dir = resolvePath(checkPath(o.dir, 'dir'));
    const table = checkPoolTable(o);
    const dataSize = parseSize(o.dataSize ?? THIN_POOL_DEFAULTS.dataSize, 'dataSize');
    const metadataSize = checkMetadataSize(parseSize(o.metadataSize ?? THIN_POOL_DEFAULTS.metadataSize, 'metadataSize'), 'metadataSize');
    if (dataSize < table.blockSectors * SECTOR) throw invalidArg('dataSize', `${dataSize} bytes is less than one ${table.blockSectors * SECTOR}-byte block`);
    if (o.name !== undefined) checkName(o.name, 'name');
    if (o.prefix !== undefined) checkName(o.prefix, 'prefix');
    await mkdir(dir, { recursive: true });
    const name = o.name ?? (await defaultPoolName(dir, o.prefix));
    const backing: LoopBacking = { dir, dataFile: join(dir, 'data'), metadataFile: join(dir, 'metadata') };

    let live = await dm.info(name).catch(() => undefined);
    if (live && !live.activeTable) {
      await dm.remove(name); // made, never loaded: a process died in between
      live = undefined;
    }
    // Sizes the caller gave for files that exist: larger grows, smaller is refused.
    const given = { data: o.dataSize !== undefined, metadata: o.metadataSize !== undefined };
    const existing = { data: await fileSize(backing.dataFile), metadata: await fileSize(backing.metadataFile) };
    const wanted = { data: dataSize, metadata: metadataSize };
    for (const what of ['data', 'metadata'] as const) {
      const has = existing[what];
      if (given[what] && has !== undefined && wanted[what] < has) {
        throw invalidArg(`${what}Size`, `${backing[`${what}File`]} is ${has} bytes (${humanSize(has)}); a thin pool's ${what} cannot shrink to ${wanted[what]}`);
      }
    }
    const grow = (what: 'data' | 'metadata') => given[what] && existing[what] !== undefined && wanted[what] > existing[what]!;

    if (live) {
      const pool = await ThinPool.open(name);
      if (pool.loopBacking?.dataFile !== backing.dataFile) {
        throw new DmError(`a device named '${name}' exists but is not a pool on ${backing.dataFile}`, { code: 'EEXIST', device: name });
      }
      if (grow('data') || grow('metadata')) {
        await pool.resize({ ...(grow('data') ? { dataSize } : {}), ...(grow('metadata') ? { metadataSize } : {}) });
      }
      return pool;
    }

    return Undo.guard(async (undo) => {
      const fresh = !(await exists(backing.metadataFile));
      for (const what of ['data', 'metadata'] as const) {
        const file = backing[`${what}File`];
        const has = existing[what];
        if (has !== undefined) {
          // The pool is not active: growing the file before the loop attaches is the whole resize.
          if (grow(what)) {
            await truncate(file, wanted[what]);
            undo.push(() => truncate(file, has));
          }
          continue;
        }
        await (await open(file, 'wx')).close();
        undo.push(() => unlink(file));
        await truncate(file, wanted[what]);
      }
      if (fresh) await zeroHeader(backing.metadataFile); // the kernel formats metadata whose superblock is zero
      // Autoclear: the loops detach by themselves once the pool device is removed.
      const dataLoop = await loop.attach(backing.dataFile, { autoclear: true });
      undo.push(() => dataLoop.release());
      const metaLoop = await loop.attach(backing.metadataFile, { autoclear: true });
      undo.push(() => metaLoop.release());
      const sectors = poolSectors((await stat(backing.dataFile)).size, table.blockSectors);
      if (sectors === 0) throw invalidArg('dataSize', `${backing.dataFile} is smaller than one block`);
      const params: ThinPoolParams = {
        metadataDevice: metaLoop.path,
        dataDevice: dataLoop.path,
        dataBlockSectors: table.blockSectors,
        lowWaterMark: table.lowWaterMark,
        features: table.features,
      };
      const dev = await dm.create(name, { table: [{ start: 0, length: sectors, type: 'thin-pool', params: poolGrammar.format(params) }] });
      // The pool holds both loops open now; drop our handles so autoclear can act later.
      await dataLoop.release();
      await metaLoop.release();
      return new ThinPool(name, dev.path, params, sectors, backing);
    });
  }

  /** A pool on given block devices (Docker's direct-lvm with dm.datadev / dm.metadatadev). */
  static async create(options: DirectOptions): Promise<ThinPool> {
    const o = checkOptions<DirectOptions>(options, 'options', ['name', 'dataDevice', 'metadataDevice', 'zeroMetadata', ...TABLE_KEYS]);
    const name = checkName(o.name, 'name');
    const dataDevice = checkPath(o.dataDevice, 'dataDevice');
    const metadataDevice = checkPath(o.metadataDevice, 'metadataDevice');
    const table = checkPoolTable(o);
    const zero = checkBoolean(o.zeroMetadata, 'zeroMetadata') ?? false;
    const [dataBytes, metaBytes] = await Promise.all([deviceSize(dataDevice), deviceSize(metadataDevice)]);
    checkMetadataSize(Math.min(metaBytes, MAX_METADATA_SIZE), 'metadataDevice');
    const sectors = poolSectors(dataBytes, table.blockSectors);
    if (sectors === 0) throw invalidArg('dataDevice', `${dataDevice} is smaller than one block`);
    if (zero) await zeroHeader(metadataDevice);
    const params: ThinPoolParams = { metadataDevice, dataDevice, dataBlockSectors: table.blockSectors, lowWaterMark: table.lowWaterMark, features: table.features };
    const dev = await dm.create(name, { table: [{ start: 0, length: sectors, type: 'thin-pool', params: poolGrammar.format(params) }] });
    return new ThinPool(name, dev.path, params, sectors, undefined);
  }

  /** An existing pool device (Docker's dm.thinpooldev). */
  static async open(name: string): Promise<ThinPool> {
    checkName(name, 'name');
    const table = await dm.table(name);
    if (table.length !== 1 || table[0]!.type !== 'thin-pool') {
      throw new DmError(`'${name}' is not a thin pool (its table is ${table.map((t) => t.type).join(', ') || 'empty'})`, { code: 'ERR_DM_INVALID_ARG', device: name });
    }
    const params = poolGrammar.parse(table[0]!.params);
    // Thin tables name the pool by its node: make sure it is there.
    await ensureBlockNode(mapperPath(name), await dm.info(name));
    return new ThinPool(name, mapperPath(name), params, table[0]!.length, await loopBackingOf(params));
  }

  /** The pool's status, parsed. */
  async status(): Promise<PoolStatus> {
    const [line] = await dm.status(this.name);
    if (!line || line.type !== 'thin-pool') throw new DmError(`'${this.name}' has no thin-pool status`, { code: 'ERR_DM_DECODE', device: this.name });
    const s = poolGrammar.parseStatus(line.params);
    if (s.state !== 'ok') {
      return {
        mode: 'fail', transactionId: 0, usedMetadataBlocks: 0, totalMetadataBlocks: 0, usedDataBlocks: 0, totalDataBlocks: 0,
        heldMetadataRoot: null, needsCheck: false, discardPassdown: false, errorIfNoSpace: false, alerts: ['fail'], raw: line.params,
      };
    }
    const { state: _state, ...rest } = s;
    return { ...rest, alerts: poolAlerts(rest, this.params.lowWaterMark), raw: line.params };
  }

  /** Bytes used, total and available, for data and metadata. */
  async usage(): Promise<PoolUsage> {
    const b = this.loopBacking;
    const [s, dataFree, metadataFree] = await Promise.all([this.status(), b && hostFree(b.dataFile), b && hostFree(b.metadataFile)]);
    const space = (used: number, total: number, unit: number, free: number | undefined): SpaceUsage => {
      const left = (total - used) * unit;
      if (free === undefined) return { used: used * unit, total: total * unit, available: left };
      return { used: used * unit, total: total * unit, available: Math.min(left, free), hostFree: free };
    };
    return {
      data: space(s.usedDataBlocks, s.totalDataBlocks, this.blockSize, dataFree),
      metadata: space(s.usedMetadataBlocks, s.totalMetadataBlocks, METADATA_BLOCK_SIZE, metadataFree),
    };
  }

  private nextId = 0;

  /** A thin id this process has not used yet (another process may still hold it: createThin() without an id retries). */
  nextFreeId(): number {
    const id = this.nextId;
    this.nextId = (this.nextId + 1) % (MAX_THIN_ID + 1);
    return id;
  }

  private async message(m: PoolMessage): Promise<void> {
    try {
      await dm.message(this.name, m.text);
    } catch (e) {
      const advice = e instanceof DmError ? m.hints[e.code] : undefined;
      if (!advice || !(e instanceof DmError)) throw e;
      throw new DmError(`${e.message} — ${advice}`, { code: e.code, errno: e.errno, syscall: e.syscall, ioctl: e.ioctl, device: e.device, cause: e });
    }
  }

  /** Try `create(id)` with `id`, or with successive free ids when none is given. */
  private async allocate(id: number | undefined, create: (id: number) => Promise<void>): Promise<number> {
    if (id !== undefined) {
      await create(checkThinId(id));
      return id;
    }
    for (let attempt = 0; attempt <= MAX_THIN_ID; attempt++) {
      const candidate = this.nextFreeId();
      try {
        await create(candidate);
        return candidate;
      } catch (e) {
        if (!(e instanceof DmError) || e.code !== 'EEXIST') throw e;
      }
    }
    throw new DmError(`pool '${this.name}' has no free thin id`, { code: 'ENOSPC', device: this.name });
  }

  /** Create thin device `id` (or the next free id); resolves with the id. */
  async createThin(id?: number): Promise<number> {
    return serialised(this.name, () =>
      this.allocate(id, (n) => this.message(msg.createThin(this.name, n))),
    );
  }

  /**
   * Snapshot thin device `originId` as `id` (or the next free id). Active
   * origins are suspended for the snapshot and resumed whatever happens.
   */
  async createSnapshot(id: number | undefined, originId: number): Promise<number> {
    checkThinId(originId, 'originId');
    if (id !== undefined) checkThinId(id);
    return serialised(this.name, () => this.allocate(id, async (n) => void (await this.snapshotTrip(n, originId, this.name, []))));
  }

  /**
   * Snapshot `originId` as `n`, then the `create` steps (which activate it;
   * may be none), in one trip. Active origins must be suspended for the
   * snapshot. Which devices those are is guessed from the pool's devices as
   * last seen, when its sysfs holders are all known, and checked in the same
   * trip: their tables are read first. A wrong guess (a device changed
   * meanwhile) undoes the snapshot and makes it again after a fresh look.
   * Resolves with the replies of the `create` steps.
   */
  private async snapshotTrip(n: number, originId: number, name: string, create: batch.Step[]): Promise<DmIoctlReply[]> {
    for (let guess = this.guessDevices(); ; guess = undefined) {
      const checks = guess ? [...guess.devices.keys()].map((minor) => tableStep(guess.pool, minor)) : [];
      const origins = guess ? [...guess.devices.values()].filter((d) => d.id === originId).map((d) => d.name) : await this.activeNames(originId);
      const snap = this.snapshotSteps(n, originId, origins);
      const o = await batch.runSteps([...checks, ...snap, ...create], name);
      if (!o.ok) {
        // Undone: origins resumed, the snapshot deleted, a half-made device removed.
        await o.undo();
        const at = o.failed.index - checks.length;
        if (at < 0) continue; // a device went away meanwhile: nothing done yet; look properly
        if (guess && at < origins.length) continue; // a guessed origin is not there: nothing snapshotted; look properly
        throw o.failed.error;
      }
      if (guess) {
        const seen = this.remember(o.replies.slice(0, checks.length), guess.pool);
        const actual = seen.filter((d) => d.id === originId).map((d) => d.name);
        const pool = o.replies[checks.length + origins.length]!.dev; // the message's reply: the pool it went to
        if (pool.major !== guess.pool.major || pool.minor !== guess.pool.minor || actual.length !== origins.length || actual.some((x) => !origins.includes(x))) {
          // An active origin may have gone unsuspended: undo, and go again the careful way.
          await o.undo();
          this.dev = undefined;
          continue;
        }
      }
      return o.replies.slice(checks.length + snap.length);
    }
  }

  /**
   * The devices on the pool now (sysfs holders of the pool's number as last
   * known), by minor, with the thin ids last seen for them; undefined if one is not known.
   */
  private guessDevices(): { pool: DevNumber; devices: Map<number, { name: string; id: number }> } | undefined {
    const pool = (this.dev ??= nodeDev(this.path));
    if (!pool) return undefined;
    const devices = new Map<number, { name: string; id: number }>();
    for (const minor of dmHolderMinors(`dm-${pool.minor}`)) {
      const known = this.seen.get(minor);
      if (!known) return undefined;
      devices.set(minor, known);
    }
    return { pool, devices };
  }

  /** Note the thin ids of devices on the pool from their DM_TABLE_STATUS replies (-1: not a thin device of this pool). */
  private remember(tables: DmIoctlReply[], pool: DevNumber): Array<{ name: string; id: number }> {
    return tables.map((reply) => {
      // The kernel names the pool by number; a minor reused meanwhile may be a thin device of another pool.
      const thin = reply.targets?.filter((x) => x.type === 'thin').map((x) => thinGrammar.parse(x.params));
      const t = thin?.find((x) => x.poolDevice === `${pool.major}:${pool.minor}`);
      const d = { name: reply.name, id: t ? t.deviceId : -1 };
      this.seen.set(reply.dev.minor, d);
      return d;
    });
  }

  /** Names of the active devices that map thin id `id`. */
  private async activeNames(id: number): Promise<string[]> {
    return (await this.activeDevices()).filter((d) => d.id === id).map((d) => d.name);
  }

  /** Suspend the active origins, snapshot, resume them: steps for one trip, each undone if a later one fails. */
  private snapshotSteps(n: number, originId: number, origins: string[]): batch.Step[] {
    return [
      ...origins.map((name) => batch.suspend(name)),
      batch.message(this.name, msg.createSnap(this.name, n, originId), msg.deleteThin(this.name, n)),
      ...[...origins].reverse().map((name) => batch.resume(name)),
    ];
  }

  /**
   * Create thin device `options.id` (or the next free id) and activate it as
   * `options.name`: create_thin, create, load and resume in one trip to the
   * kernel (what containerd's CreateThinDevice does in two). If a step fails,
   * what was done is undone.
   */
  async createThinDevice(options: ThinDeviceOptions): Promise<ThinDevice> {
    const { id, name, steps } = this.deviceSteps(options);
    return serialised(this.name, async () => {
      let device: dm.DeviceInfo | undefined;
      const made = await this.allocate(id, async (n) => {
        const replies = await batch.runBatch([batch.message(this.name, msg.createThin(this.name, n), msg.deleteThin(this.name, n)), ...steps(n)], name);
        device = await this.finishDevice(n, name, replies.slice(1));
      });
      return { ...device!, id: made };
    });
  }

  /**
   * Snapshot thin device `originId` as `options.id` (or the next free id) and
   * activate the snapshot as `options.name`, in one trip: suspend the active
   * origins, create_snap, resume them, create, load and resume. If a step
   * fails, what was done is undone and no origin stays suspended.
   */
  async createSnapshotDevice(originId: number, options: ThinDeviceOptions): Promise<ThinDevice> {
    checkThinId(originId, 'originId');
    const { id, name, steps } = this.deviceSteps(options);
    return serialised(this.name, async () => {
      let device: dm.DeviceInfo | undefined;
      const made = await this.allocate(id, async (n) => {
        device = await this.finishDevice(n, name, await this.snapshotTrip(n, originId, name, steps(n)));
      });
      return { ...device!, id: made };
    });
  }

  /** Validate a thin device's options (before any ioctl); the create steps for a given thin id. */
  private deviceSteps(options: ThinDeviceOptions): { id: number | undefined; name: string; steps: (n: number) => batch.Step[] } {
    const o = checkOptions<ThinDeviceOptions>(options, 'options', ['id', 'name', 'size', 'readOnly']);
    const id = o.id === undefined ? undefined : checkThinId(o.id, 'options.id');
    const { name, readOnly, length } = checkActivate(o);
    const steps = (n: number) =>
      batch.createDevice(name, { readOnly, table: [{ start: 0, length, type: 'thin', params: thinGrammar.format({ poolDevice: this.path, deviceId: n }) }] });
    return { id, name, steps }; // steps(n) checks the table before the first ioctl
  }

  /** After the create steps for thin id `n` succeeded: its node (batch.finishCreate), or on failure the id deleted too. */
  private async finishDevice(n: number, name: string, replies: DmIoctlReply[]): Promise<dm.DeviceInfo> {
    try {
      const device = await batch.finishCreate(name, replies);
      this.seen.set(device.minor, { name, id: n });
      return device;
    } catch (e) {
      await this.message(msg.deleteThin(this.name, n)).catch(() => undefined);
      throw e;
    }
  }

  /**
   * Deactivate thin device `name` and delete thin id `id`, the one it maps
   * (as createThinDevice() returned them): remove and delete in one trip. If
   * the delete fails, the device is put back as it was.
   */
  async removeThinDevice(name: string, id: number): Promise<void> {
    checkName(name);
    checkThinId(id);
    return serialised(this.name, async () => {
      const table = batch.readTable({ name });
      const remove = batch.remove(name, { restore: table, hints: { EBUSY: `'${name}' is in use (mounted or open); close it first` } });
      const o = await batch.runSteps([table, remove, batch.message(this.name, msg.deleteThin(this.name, id))], name);
      if (!o.ok) {
        // The device gone, its id not: another device maps the id or a
        // removal still holds it (EBUSY: deleteThin's way finds which, or
        // waits it out), or there is no such id. Else the device goes back.
        let error = o.failed.error;
        const deleted = o.failed.index === 2 && error.code === 'EBUSY' && (await this.deleteId(id).then(() => true, (e: DmError) => ((error = e), false)));
        if (!deleted) {
          await o.undo();
          throw error;
        }
      }
      await removeNode(mapperPath(name));
      this.forget(name);
    });
  }

  /** Drop a removed device from the devices last seen (its minor will be reused). */
  private forget(name: string): void {
    for (const [minor, d] of this.seen) if (d.name === name) this.seen.delete(minor);
  }

  /** Delete thin device `id` and free its blocks; it must not be active. */
  async deleteThin(id: number): Promise<void> {
    checkThinId(id);
    return serialised(this.name, () => this.deleteId(id));
  }

  /**
   * The delete message. The kernel refuses (EBUSY) an id that is open; only
   * then look for the device that maps it (a trip the common case skips).
   * With none, the kernel still holds the id a moment after a deferred
   * removal dropped its name: retry that, bounded (about 5 s).
   */
  private async deleteId(id: number): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.message(msg.deleteThin(this.name, id));
        return;
      } catch (e) {
        if (!(e instanceof DmError) || e.code !== 'EBUSY') throw e;
        const active = (await this.activeDevices()).filter((d) => d.id === id).map((d) => d.name);
        if (active.length > 0) {
          throw new DmError(`thin id ${id} is active as ${active.map((n) => `'${n}'`).join(', ')}; deactivate it first`, { code: 'EBUSY', device: this.name });
        }
        if (attempt >= DELETE_RETRY.attempts) throw e;
        await sleep(Math.min(DELETE_RETRY.delayMs, 10 * 2 ** attempt));
      }
    }
  }

  /** Map thin device `id` as a block device of `size` bytes named `name`. */
  async activate(id: number, options: ActivateOptions): Promise<dm.DeviceInfo> {
    checkThinId(id);
    const { name, readOnly, length } = checkActivate(checkOptions<ActivateOptions>(options, 'options', ['name', 'size', 'readOnly']));
    const params = thinGrammar.format({ poolDevice: this.path, deviceId: id });
    const device = await dm.create(name, { readOnly, table: [{ start: 0, length, type: 'thin', params }] });
    this.seen.set(device.minor, { name, id });
    return device;
  }

  /** Remove the thin device `name`; with `deferred`, when its last user closes it. */
  async deactivate(name: string, options?: { deferred?: boolean }): Promise<dm.RemoveResult> {
    checkName(name);
    const o = checkOptions<{ deferred: boolean }>(options, 'options', ['deferred']);
    const r = await dm.remove(name, { deferred: checkBoolean(o.deferred, 'options.deferred') ?? false });
    if (!r.deferred) this.forget(name);
    return r;
  }

  /**
   * How much of thin device `id` the pool has mapped: the thin target's
   * status (mapped sectors, highest mapped sector). For an id that is active
   * the status of its device; for one that is not, of a short read-only
   * activation under a scratch name, removed again before this resolves
   * (the kernel counts mappings per thin id, whatever the table's length).
   */
  async thinUsage(id: number): Promise<ThinUsage> {
    checkThinId(id);
    const active = (await this.activeDevices()).find((d) => d.id === id);
    if (active) {
      const status = await thinStatusOf(active.name).catch((e: unknown) => {
        // Removed meanwhile: look again the other way.
        if (e instanceof DmError && e.code === 'ENXIO') return undefined;
        throw e;
      });
      if (status) return usageFrom(id, status, 'active');
    }
    return serialised(this.name, async () => {
      const name = `${this.name.slice(0, 100)}-usage-${id}`;
      const length = this.params.dataBlockSectors;
      const params = thinGrammar.format({ poolDevice: this.path, deviceId: id });
      await dm.create(name, { readOnly: true, table: [{ start: 0, length, type: 'thin', params }] }).catch((e: unknown) => {
        if (e instanceof DmError && (e.code === 'ENODATA' || e.code === 'EINVAL')) {
          throw new DmError(`thin id ${id} does not exist in pool '${this.name}' (or cannot be opened: ${e.code})`, { code: 'ERR_DM_NOT_FOUND', device: this.name, cause: e });
        }
        throw e;
      });
      try {
        return usageFrom(id, await thinStatusOf(name), 'activation');
      } finally {
        await dm.remove(name, { retry: true });
      }
    });
  }

  /** Change the pool's transaction id from `from` to `to` (EINVAL if it is not `from`). */
  async setTransactionId(from: number, to: number): Promise<void> {
    checkUint(from, 'from');
    checkUint(to, 'to');
    return serialised(this.name, () =>
      this.message(msg.setTransactionId(from, to)),
    );
  }

  /** Hold a metadata snapshot so thin_dump --metadata-snap can read a consistent copy of a live pool. */
  async reserveMetadataSnap(): Promise<void> {
    return serialised(this.name, () =>
      this.message(msg.reserveMetadataSnap()),
    );
  }

  async releaseMetadataSnap(): Promise<void> {
    return serialised(this.name, () => this.message(msg.releaseMetadataSnap()));
  }

  /**
   * Thin devices active on this pool right now, with their thin ids: the
   * pool's sysfs holders, their tables read in one threadpool trip together
   * with the pool's own status, which proves the holders were the pool's. A
   * holder removed between the sysfs read and the trip is not active: the
   * rest are read in a further trip.
   */
  async activeDevices(): Promise<Array<{ name: string; id: number }>> {
    let dev = (this.dev ??= nodeDev(this.path) ?? (await dm.info(this.name)));
    let holders = dmHolderMinors(`dm-${dev.minor}`);
    const tables: DmIoctlReply[] = [];
    for (let stale = 0; ; ) {
      const o = await batch.runSteps([batch.readInfo(this.name), ...holders.map((minor) => tableStep(dev, minor))], this.name);
      if (!o.ok && o.failed.index === 0) throw o.failed.error;
      const replies = o.replies;
      const pool = replies[0]!.dev;
      if (pool.minor !== dev.minor || pool.major !== dev.major) {
        // Our idea of the pool's number was stale (a node of an old pool): look again.
        if (++stale >= 10) throw new DmError(`the devices on pool '${this.name}' kept changing; try again`, { code: 'EAGAIN', device: this.name });
        dev = this.dev = pool;
        holders = dmHolderMinors(`dm-${dev.minor}`);
        tables.length = 0;
        continue;
      }
      tables.push(...replies.slice(1));
      if (o.ok) break;
      // Step k read holders[k - 1]; ENXIO: it went away meanwhile. Each such trip shortens the list.
      if (o.failed.error.code !== 'ENXIO') throw o.failed.error;
      holders = holders.slice(o.failed.index);
    }
    this.seen.clear();
    return this.remember(tables, dev).filter((d) => d.id >= 0);
  }

  /**
   * Grow the pool. Loop-backed: `dataSize` / `metadataSize` grow the files,
   * the loops pick up the new size and the pool table is reloaded. Direct:
   * the pool is reloaded at its data device's current size. Shrinking is
   * refused. `lowWaterMark` (data blocks) replaces the table's low water mark
   * in the same reload.
   */
  async resize(options: ResizeOptions = {}): Promise<void> {
    const o = checkOptions<ResizeOptions>(options, 'options', ['dataSize', 'metadataSize', 'lowWaterMark', 'onProgress']);
    const progress = checkProgress(o.onProgress, 'options.onProgress');
    const dataSize = o.dataSize === undefined ? undefined : parseSize(o.dataSize, 'dataSize');
    const metadataSize = o.metadataSize === undefined ? undefined : checkMetadataSize(parseSize(o.metadataSize, 'metadataSize'), 'metadataSize');
    const lowWaterMark = o.lowWaterMark === undefined ? undefined : checkUint(o.lowWaterMark, 'lowWaterMark');
    return serialised(this.name, async () => {
      const b = this.loopBacking;
      if (!b && (dataSize !== undefined || metadataSize !== undefined)) {
        throw invalidArg('options', `pool '${this.name}' is on block devices: grow them (e.g. lvextend), then call resize() with no sizes`);
      }
      if (b) {
        await growFile(b.dataFile, dataSize, 'dataSize', this.params.dataDevice);
        await growFile(b.metadataFile, metadataSize, 'metadataSize', this.params.metadataDevice);
      }
      const dataBytes = b ? (await stat(b.dataFile)).size : await deviceSize(await devicePath(this.params.dataDevice));
      const sectors = poolSectors(dataBytes, this.params.dataBlockSectors);
      if (sectors < this.sectors) throw invalidArg('dataSize', `the pool is ${this.sectors * SECTOR} bytes; shrinking a thin pool is not possible`);
      const params = { ...this.params, lowWaterMark: lowWaterMark ?? this.params.lowWaterMark };
      // Load, then suspend and resume: the data length and any metadata growth
      // take effect on resume. noFlush: a full pool cannot flush queued I/O.
      await step(progress, `reloading pool '${this.name}' at ${humanSize(sectors * SECTOR)}`, async () => {
        await dm.load(this.name, [{ start: 0, length: sectors, type: 'thin-pool', params: poolGrammar.format(params) }]);
        await dm.suspend(this.name, { noFlush: true });
        await dm.resume(this.name);
      });
      this.sectors = sectors;
      this.params = params;
    });
  }

  /**
   * Watch the pool's device-mapper events: see {@link PoolWatcher}. With
   * `autoExtend` (loop-backed pools), the watcher grows the pool before it
   * fills.
   */
  watch(options?: WatchOptions): PoolWatcher {
    return new PoolWatcher(this, options);
  }

  /**
   * Remove the pool device (and the thin devices active on it); a loop-backed
   * pool's loop devices are detached and its files kept, so createLoopBacked()
   * on the same dir reopens it. Fails with EBUSY, changing nothing, while a
   * thin device is open.
   */
  async destroy(): Promise<void> {
    return serialised(this.name, async () => {
      const active = await this.activeDevices();
      const open = [];
      for (const d of active) if ((await dm.info(d.name)).openCount > 0) open.push(d.name);
      if (open.length > 0) {
        throw new DmError(`pool '${this.name}' has open thin devices: ${open.join(', ')}; unmount or close them first`, { code: 'EBUSY', device: this.name });
      }
      for (const d of active) await dm.remove(d.name, { retry: true });
      const loops = [this.params.dataDevice, this.params.metadataDevice];
      await dm.remove(this.name, { retry: true });
      if (this.loopBacking) {
        // Autoclear detaches our own loops; detach ones a foreign tool attached without it.
        for (const l of loops) {
          const path = await devicePath(l);
          const info = await loop.info(path).catch(() => undefined);
          if (info && (info.backingFile === this.loopBacking.dataFile || info.backingFile === this.loopBacking.metadataFile)) await loop.detach(path);
        }
      }
    });
  }
}

/** /dev/... path for a table device that may be printed as MAJ:MIN. */
async function devicePath(device: string): Promise<string> {
  const m = /^(\d+):(\d+)$/.exec(device);
  if (!m) return device;
  const name = await blockName({ major: Number(m[1]), minor: Number(m[2]) });
  if (!name) throw new DmError(`no block device ${device}`, { code: 'ENXIO', device });
  return name.startsWith('dm-') ? `/dev/mapper/${(await dm.info({ major: Number(m[1]), minor: Number(m[2]) })).name}` : `/dev/${name}`;
}

async function loopFile(device: string): Promise<string | undefined> {
  const m = /^(\d+):(\d+)$/.exec(device);
  const dev: DevNumber | undefined = m ? { major: Number(m[1]), minor: Number(m[2]) } : undefined;
  const block = dev ? await blockName(dev) : /^\/dev\/(loop\d+)$/.exec(device)?.[1];
  if (!block?.startsWith('loop')) return undefined;
  return (await loop.info(Number(block.slice(4))).catch(() => undefined))?.backingFile;
}

async function loopBackingOf(p: ThinPoolParams): Promise<LoopBacking | undefined> {
  const [dataFile, metadataFile] = await Promise.all([loopFile(p.dataDevice), loopFile(p.metadataDevice)]);
  if (!dataFile || !metadataFile) return undefined;
  return { dir: dataFile.slice(0, dataFile.lastIndexOf('/')), dataFile, metadataFile };
}

/** Free bytes of the filesystem holding `file` (statfs f_bfree, as Docker: the loop driver writes as root, which may use the reserved blocks). */
async function hostFree(file: string): Promise<number> {
  const st = await statfs(file).catch((e: NodeJS.ErrnoException) => {
    throw new DmError(`cannot statfs ${file}: ${e.code}`, { code: e.code ?? 'EIO', syscall: 'statfs', device: file, cause: e });
  });
  return st.bfree * st.bsize;
}

/** The parsed status of thin device `name`; a failed pool or unreadable metadata is an error. */
async function thinStatusOf(name: string): Promise<{ mappedSectors: number; highestMappedSector: number | null }> {
  const [line] = await dm.status(name);
  const s = line?.type === 'thin' ? thinGrammar.parseStatus(line.params) : undefined;
  if (!s) throw new DmError(`'${name}' has no thin status`, { code: 'ERR_DM_DECODE', device: name });
  if (s.state !== 'ok') throw new DmError(`'${name}' reports '${s.state}': its pool has failed or its metadata cannot be read`, { code: 'EIO', device: name });
  return s;
}

function usageFrom(thinId: number, s: { mappedSectors: number; highestMappedSector: number | null }, source: ThinUsage['source']): ThinUsage {
  return { thinId, mappedSectors: s.mappedSectors, mappedBytes: s.mappedSectors * SECTOR, highestMappedSector: s.highestMappedSector, source };
}

/** A file's size, or undefined when there is no such file. */
async function fileSize(path: string): Promise<number | undefined> {
  return stat(path).then(
    (st) => st.size,
    (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return undefined;
      throw new DmError(`cannot stat ${path}: ${e.code}`, { code: e.code ?? 'EIO', syscall: 'stat', device: path, cause: e });
    },
  );
}

async function growFile(file: string, size: number | undefined, field: string, device: string): Promise<void> {
  if (size === undefined) return;
  const current = (await stat(file)).size;
  if (size < current) throw invalidArg(field, `${file} is ${current} bytes; shrinking a thin pool is not possible`);
  if (size === current) return;
  await truncate(file, size);
  await loop.refreshCapacity(await devicePath(device));
}
