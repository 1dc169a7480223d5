// Docker's devicemapper graph driver as a library: a base thin device with a
// filesystem, devices named by string ids as snapshots of it (or of each
// other), mount/unmount with reference counts, and records that agree with
// the pool after a crash at any point.
//
// Every change to the pool runs as a transaction (as moby's deviceset did):
//   1. write transaction.json: op, thin id, and the pool transaction id T+1
//   2. change the pool (create_thin / create_snap / delete)
//   3. write or remove the device record
//   4. set the pool's transaction id T -> T+1 (the commit point)
//   5. remove transaction.json
// On open, an open transaction whose T+1 the pool has reached is complete;
// one it has not reached is undone (a create) or finished (a delete).
import { constants } from 'node:fs';
import { mkdir, open, readFile, type FileHandle } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import { inspect, type InspectOptionsStylized } from 'node:util';
import * as sys from './sys';
import * as dm from './dm';
import { checkDockerOptions, openDockerStore, readOnlyError, READ_WRITE, refuseDockerStore, type SetAccess } from './docker-store';
import { DmError, invalidArg } from './errors';
import { filesystemUuid, growFilesystem, makeFilesystem, mountDevice, removeMountPoint, setXfsNospaceRetries, unmountLazily, type FsType } from './filesystem';
import { humanSize } from './format';
import { directLvmFromSetOptions, DIRECT_LVM_SET_KEYS, setUpDirectLvm, type DirectLvmSetOptions } from './direct-lvm';
import { MetadataStore, type DeviceRecord, type RecordStore, type SetRecord } from './metadata-store';
import { ensureBlockNode, mapperPath, udevRunning } from './nodes';
import { checkProgress, step, type ProgressHandler } from './progress';
import { parseSize } from './size';
import { LIBRARY_VERSION } from './version';
import { defaultPoolName, devicePath, MAX_THIN_ID, METADATA_BLOCK_SIZE, ThinPool } from './pool/index';
import { checkBoolean, checkName, checkOptions, checkPath, checkUint, DM_NAME_MAX } from './validate';

const GiB = 1024 ** 3;
const BASE = '';

export interface DeviceSetOptions extends DirectLvmSetOptions {
  /** Directory holding devicemapper/ (loop files), metadata/ and mnt/. */
  root: string;
  /**
   * 'devmapper' (default): the library's own records. 'docker': a store that
   * Docker's devicemapper driver left under root (/var/lib/docker/devicemapper),
   * opened read-only (see lib/docker-store.ts).
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
  /** Loop-backed pool settings (Docker's dm.loopdatasize, dm.loopmetadatasize, dm.blocksize). */
  dataSize?: number | string;
  metadataSize?: number | string;
  blockSize?: number | string;
  /** Block devices for a pool the set creates (dm.datadev / dm.metadatadev). */
  dataDevice?: string;
  metadataDevice?: string;
  /** An existing pool to use (dm.thinpooldev). */
  poolName?: string;
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

export interface CreateOptions {
  /** Id of the device to snapshot (default: the base device). */
  parent?: string;
  /** Bytes (or a size string); larger than the parent grows the device and its filesystem. */
  size?: number | string;
}

export interface DeviceDetails {
  id: string;
  parent: string | null;
  /** Thin device id in the pool. */
  deviceId: number;
  size: number;
  /** /dev/mapper/NAME (present while active). */
  path: string;
  active: boolean;
  /** Where this set mounted it, if it did. */
  mountPoint?: string;
  /** Waiting for deferred deletion. */
  deleted: boolean;
}

/** What the pool has mapped of one device (moby's GetDeviceStatus; containerd's Usage size). */
export interface DeviceUsage {
  id: string;
  /** Thin device id in the pool. */
  deviceId: number;
  /** The device's size in bytes. */
  size: number;
  /** Bytes the pool has mapped for it (its own and those shared with its parent). */
  mappedBytes: number;
  mappedSectors: number;
  /** null when nothing is mapped. */
  highestMappedSector: number | null;
  /** The pool transaction that created the device. */
  transactionId: number;
}

/** The storage fields of `docker info`, as data (bytes for sizes). */
export interface DeviceSetInfo {
  poolName: string;
  poolBlockSize: number;
  baseDeviceSize: number;
  backingFilesystem: FsType;
  /** The pool's data and metadata devices. */
  dataFile: string;
  metadataFile: string;
  /** Loop-backed pools: the sparse files. */
  dataLoopFile?: string;
  metadataLoopFile?: string;
  dataSpaceUsed: number;
  dataSpaceTotal: number;
  dataSpaceAvailable: number;
  metadataSpaceUsed: number;
  metadataSpaceTotal: number;
  metadataSpaceAvailable: number;
  /** Bytes of data space kept free (minFreeSpace of the total). */
  thinPoolMinimumFreeSpace: number;
  udevSyncSupported: boolean;
  deferredRemovalEnabled: boolean;
  deferredDeletionEnabled: boolean;
  deferredDeletedDeviceCount: number;
  libraryVersion: string;
  driverVersion: string;
  devices: number;
}

const OPTION_KEYS = [
  'root', 'baseSize', 'fs', 'mkfsArgs', 'mountOptions', 'dataSize', 'metadataSize', 'blockSize', 'dataDevice', 'metadataDevice',
  'layout', 'readOnly', 'poolName', 'minFreeSpace', 'deferredRemoval', 'deferredDeletion', 'discard', 'cleanupIntervalMs', 'onProgress',
  'xfsNospaceMaxRetries', ...DIRECT_LVM_SET_KEYS,
] as const;

const ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

function checkStrings(value: unknown, field: string): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string' && v.length > 0 && !v.includes('\0'))) {
    throw invalidArg(field, 'expected an array of non-empty strings');
  }
  return value as string[];
}

interface Settings {
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

export class DeviceSet {
  /** Mounts made through this object: id → mount point and reference count. */
  private readonly mounts = new Map<string, { target: string; count: number }>();
  private queue: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(
    private readonly settings: Settings,
    readonly pool: ThinPool,
    private readonly ownsPool: boolean,
    private readonly store: RecordStore,
    private set: SetRecord,
    private readonly lock: FileHandle,
    /** Device-mapper names are `<prefix>-<id>`; the base device is `<prefix>-base`. */
    readonly prefix: string,
    /** Read-only (a Docker store), and the devices it found active and leaves so. */
    private readonly access: SetAccess = READ_WRITE,
  ) {}

  /** Open the set under `root`, creating it (pool, base device, filesystem) on first use. */
  static async open(options: DeviceSetOptions): Promise<DeviceSet> {
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
      xfsNospaceMaxRetries: o.xfsNospaceMaxRetries === undefined ? undefined : checkUint(o.xfsNospaceMaxRetries, 'xfsNospaceMaxRetries', { max: 2 ** 31 - 1 }),
    };
    if (settings.baseSize % 512 !== 0 || settings.baseSize < 16 * 1024 * 1024) throw invalidArg('baseSize', `${settings.baseSize} bytes: at least 16M and a multiple of 512`);
    if (o.poolName !== undefined) checkName(o.poolName, 'poolName');
    if ((o.dataDevice === undefined) !== (o.metadataDevice === undefined)) throw invalidArg('dataDevice', 'give both dataDevice and metadataDevice, or neither');
    if (o.poolName !== undefined && o.dataDevice !== undefined) throw invalidArg('poolName', 'give poolName or dataDevice/metadataDevice, not both');
    if (o.layout !== undefined && o.layout !== 'devmapper' && o.layout !== 'docker') {
      throw invalidArg('layout', `'${String(o.layout)}' is not 'devmapper' or 'docker'`);
    }
    if (checkBoolean(o.readOnly, 'readOnly') && o.layout !== 'docker') throw invalidArg('readOnly', "only layout 'docker' opens read-only");
    const directLvm = directLvmFromSetOptions(o);
    if (o.layout === 'docker' && directLvm) throw invalidArg('directLvmDevice', "not with layout 'docker': a Docker store is opened as Docker left it");
    if (o.layout === 'docker') return DeviceSet.openDocker(settings, o);
    await refuseDockerStore(root);

    for (const d of ['devicemapper', 'metadata', 'mnt']) await mkdir(join(root, d), { recursive: true });
    const lock = await takeLock(root);
    let activated: ThinPool | undefined; // a pool this call brought up, taken down again if open fails
    let store: MetadataStore | undefined;
    try {
      store = await MetadataStore.open(join(root, 'metadata'));
      const recorded = await store.readSet();
      const setFs = recorded?.fs ?? fs;
      if (settings.xfsNospaceMaxRetries !== undefined && setFs !== 'xfs') throw invalidArg('xfsNospaceMaxRetries', `applies to xfs, and the set's filesystem is ${setFs}`);
      // direct-lvm: LVM's pool (made on first use), then used as a given poolName is.
      const poolOptions = directLvm ? { ...o, poolName: (await setUpDirectLvm(directLvm)).poolName } : o;
      const { pool, owns, created } = await openPool(root, poolOptions, recorded?.poolName);
      if (created) activated = pool;
      const set: SetRecord = recorded ?? { version: 1, poolName: pool.name, fs, nextDeviceId: 1 };
      if (set.poolName !== pool.name) throw new DmError(`the set under ${root} belongs to pool '${set.poolName}', not '${pool.name}'`, { code: 'ERR_DM_CORRUPT', device: pool.name });
      if (recorded && recorded.fs !== fs && o.fs !== undefined) throw invalidArg('fs', `the set under ${root} was made with ${recorded.fs}`);
      settings.fs = set.fs;
      if (!recorded) await store.writeSet(set);
      const prefix = pool.name.endsWith('-pool') ? pool.name.slice(0, -'-pool'.length) : pool.name;
      const ds = new DeviceSet(settings, pool, owns, store, set, lock, prefix);
      await ds.mendLeftovers();
      await ds.findMounts();
      await ds.recover();
      await ds.setUpBase();
      await ds.retryDeletions();
      ds.timer = setInterval(() => void ds.serial(() => ds.retryDeletions()).catch(() => undefined), settings.cleanupIntervalMs);
      ds.timer.unref();
      return ds;
    } catch (e) {
      await activated?.destroy().catch(() => undefined);
      await store?.close();
      await lock.close();
      throw e;
    }
  }

  /** A store of Docker's devicemapper driver, read-only (lib/docker-store.ts): nothing under root is written. */
  private static async openDocker(settings: Settings, o: Partial<DeviceSetOptions>): Promise<DeviceSet> {
    checkDockerOptions(o);
    const d = await openDockerStore(settings.root, { poolName: o.poolName, fs: o.fs });
    // No findMounts(): mounts found now are Docker's own, and close() must not unmount them.
    return new DeviceSet({ ...settings, fs: d.fs }, d.pool, d.owns, d.store, d.set, d.lock, d.prefix, d.access);
  }

  private checkWritable(what: string): void {
    if (this.access.readOnly) throw readOnlyError(what, this.settings.root);
  }

  private serial<T>(body: () => Promise<T>): Promise<T> {
    const run = this.queue.then(body, body);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private checkOpen(): void {
    if (this.closed) throw new DmError('the device set is closed', { code: 'ERR_DM_INVALID_ARG' });
  }

  private dmName(id: string): string {
    return id === BASE ? `${this.prefix}-base` : `${this.prefix}-${id}`;
  }

  private checkId(id: unknown, field = 'id'): string {
    if (typeof id !== 'string' || !ID.test(id)) throw invalidArg(field, `${JSON.stringify(id)} must start with a letter or digit and hold only letters, digits, '_', '.' and '-'`);
    if (id === 'base') throw invalidArg(field, "'base' names the base device");
    if (this.dmName(id).length > DM_NAME_MAX) throw invalidArg(field, `'${id}' makes the device name longer than ${DM_NAME_MAX} bytes`);
    return id;
  }

  private record(id: string): DeviceRecord {
    const r = this.store.get(id);
    if (!r || r.deleted) throw new DmError(`no device '${id}' in the set`, { code: 'ENOENT', device: id });
    return r;
  }

  // --- transactions -------------------------------------------------------

  private async poolTransactionId(): Promise<number> {
    const s = await this.pool.status();
    if (s.mode === 'fail') throw new DmError(`pool '${this.pool.name}' has failed; run thin_check on its metadata`, { code: 'EIO', device: this.pool.name });
    return s.transactionId;
  }

  /** Run one pool change as a transaction (see the file comment). */
  private async transaction(op: 'create' | 'delete', id: string, deviceId: number, change: () => Promise<void>, record: (txn: number) => Promise<void>): Promise<void> {
    const current = await this.poolTransactionId();
    await this.store.writeTransaction({ openTransactionId: current + 1, op, id, deviceId });
    try {
      await change();
    } catch (e) {
      await this.store.clearTransaction(); // the pool did not change
      throw e;
    }
    await record(current + 1);
    await this.pool.setTransactionId(current, current + 1);
    await this.store.clearTransaction();
  }

  /**
   * What a process killed mid-operation leaves behind: a scratch mount of a
   * filesystem being grown, a device suspended for a snapshot.
   */
  private async mendLeftovers(): Promise<void> {
    const scratch = join(this.settings.root, 'mnt', '.grow-');
    const mounts = (await readFile('/proc/self/mounts', 'utf8')).split('\n').map((l) => l.split(' ')[1] ?? '');
    for (const m of mounts.filter((m) => m.startsWith(scratch))) await unmountLazily(m).catch(() => undefined);
    for (const d of await dm.list()) {
      if (!d.name.startsWith(`${this.prefix}-`)) continue;
      const live = await dm.info(d.name).catch(() => undefined);
      if (live?.suspended) await dm.resume(d.name);
    }
  }

  /** Mounts of this set's devices made earlier (another process, a CLI call): count them as one reference each. */
  private async findMounts(): Promise<void> {
    // Source → first mount point, once: a set may hold tens of thousands of records.
    const targets = new Map<string, string>();
    for (const [source, target] of (await readFile('/proc/self/mounts', 'utf8')).split('\n').map((l) => l.split(' '))) {
      if (source && target && !targets.has(source)) targets.set(source, target);
    }
    for (const r of this.store.all()) {
      if (r.id === BASE) continue;
      const target = targets.get(mapperPath(this.dmName(r.id)));
      if (target) this.mounts.set(r.id, { target: target.replace(/\\040/g, ' '), count: 1 });
    }
  }

  /** Bring an interrupted transaction to an end so pool and records agree. */
  private async recover(): Promise<void> {
    const t = await this.store.readTransaction();
    if (!t) return;
    const current = await this.poolTransactionId();
    if (current === t.openTransactionId) {
      // Committed: the record was written before the commit point.
      await this.store.clearTransaction();
      return;
    }
    if (current !== t.openTransactionId - 1) {
      throw new DmError(`pool '${this.pool.name}' is at transaction ${current} but the set's open transaction is ${t.openTransactionId}`, { code: 'ERR_DM_CORRUPT', device: this.pool.name });
    }
    // Not committed: undo a create, finish a delete. Either way the thin id goes
    // (a delete of a device still busy becomes a deferred deletion).
    await dm.remove(this.dmName(t.id)).catch(() => undefined);
    let busy = false;
    await this.pool.deleteThin(t.deviceId).catch((e: unknown) => {
      if (e instanceof DmError && e.code === 'EBUSY' && t.op === 'delete') busy = true;
      else if (!(e instanceof DmError) || e.code !== 'ENODATA') throw e;
    });
    const r = this.store.get(t.id);
    if (r && r.deviceId === t.deviceId) {
      if (busy) await this.store.put({ ...r, deleted: true });
      else await this.store.delete(t.id);
    }
    await this.pool.setTransactionId(current, t.openTransactionId);
    await this.store.clearTransaction();
  }

  /** A thin id no record holds; the pool is asked, and EEXIST moves on (a foreign user of the pool). */
  private allocateId(): number {
    const used = new Set(this.store.all().map((r) => r.deviceId));
    let id = this.set.nextDeviceId;
    for (let n = 0; n <= MAX_THIN_ID; n++, id = (id + 1) % (MAX_THIN_ID + 1)) {
      if (!used.has(id)) return id;
    }
    throw new DmError(`pool '${this.pool.name}' has no free thin id`, { code: 'ENOSPC', device: this.pool.name });
  }

  private async createThinDevice(id: string, parent: DeviceRecord | null, size: number): Promise<DeviceRecord> {
    for (;;) {
      const deviceId = this.allocateId();
      const rec: DeviceRecord = { id, deviceId, size, parent: parent ? parent.id : null, transactionId: 0 };
      try {
        await this.transaction(
          'create',
          id,
          deviceId,
          async () => {
            if (parent) await this.pool.createSnapshot(deviceId, parent.deviceId);
            else await this.pool.createThin(deviceId);
          },
          async (txn) => {
            rec.transactionId = txn;
            if (id === BASE) rec.initialized = false;
            await this.store.put(rec);
          },
        );
        this.set = { ...this.set, nextDeviceId: (deviceId + 1) % (MAX_THIN_ID + 1) };
        await this.store.writeSet(this.set);
        return rec;
      } catch (e) {
        if (!(e instanceof DmError) || e.code !== 'EEXIST') throw e;
        this.set = { ...this.set, nextDeviceId: (deviceId + 1) % (MAX_THIN_ID + 1) }; // taken outside our records
      }
    }
  }

  private async deleteThinDevice(rec: DeviceRecord): Promise<'deleted' | 'deferred'> {
    let outcome: 'deleted' | 'deferred' = 'deleted';
    await this.transaction(
      'delete',
      rec.id,
      rec.deviceId,
      async () => {
        try {
          await this.pool.deleteThin(rec.deviceId);
        } catch (e) {
          if (e instanceof DmError && e.code === 'ENODATA') return; // already gone
          if (!(e instanceof DmError) || e.code !== 'EBUSY' || !this.settings.deferredDeletion) throw e;
          outcome = 'deferred';
        }
      },
      async () => {
        if (outcome === 'deleted') await this.store.delete(rec.id);
        else await this.store.put({ ...rec, deleted: true });
      },
    );
    return outcome;
  }

  /** Deferred deletions whose devices are no longer busy. */
  private async retryDeletions(): Promise<void> {
    for (const rec of this.store.all().filter((r) => r.deleted)) {
      const live = await dm.info(this.dmName(rec.id)).catch(() => undefined);
      if (live && live.openCount > 0) continue;
      if (live) await dm.remove(live.name).catch(() => undefined);
      await this.deleteThinDevice(rec).catch(() => undefined);
    }
  }

  // --- activation and the base device ----------------------------------------

  private async activate(rec: DeviceRecord): Promise<dm.DeviceInfo> {
    const name = this.dmName(rec.id);
    const live = await dm.info(name).catch(() => undefined);
    if (live?.activeTable) {
      if (live.deferredRemove) await dm.cancelDeferredRemove(name);
      await ensureBlockNode(live.path, live); // a killed process may have made the device but not its node
      return live;
    }
    if (live) await dm.remove(name); // created, never loaded: the process died in between
    return this.pool.activate(rec.deviceId, { name, size: rec.size, readOnly: this.access.readOnly });
  }

  private async deactivate(id: string): Promise<void> {
    const name = this.dmName(id);
    if (this.access.leaveActive.has(name) || !(await dm.info(name).catch(() => undefined))) return;
    await dm.remove(name, this.settings.deferredRemoval ? { deferred: true } : { retry: true });
  }

  /** Grow a device record to `size` and its filesystem with it. */
  private async grow(rec: DeviceRecord, size: number): Promise<DeviceRecord> {
    const name = this.dmName(rec.id);
    const live = await dm.info(name).catch(() => undefined);
    if (live) await dm.remove(name, { retry: true });
    const grown = { ...rec, size };
    const dev = await this.pool.activate(rec.deviceId, { name, size });
    try {
      const what = rec.id === BASE ? 'the base device' : `'${rec.id}'`;
      await step(this.settings.progress, `growing the ${this.settings.fs} filesystem of ${what} to ${humanSize(size)}`, () =>
        growFilesystem(dev.path, this.settings.fs, join(this.settings.root, 'mnt', `.grow-${rec.id || 'base'}`)),
      );
    } finally {
      await dm.remove(name, { retry: true });
    }
    await this.store.put(grown);
    return grown;
  }

  private async setUpBase(): Promise<void> {
    let base = this.store.get(BASE);
    if (base && !base.initialized) {
      // A crash between creating the base device and making its filesystem: start over.
      await dm.remove(this.dmName(BASE)).catch(() => undefined);
      await this.deleteThinDevice(base);
      base = undefined;
    }
    if (!base) {
      const rec = await this.createThinDevice(BASE, null, this.settings.baseSize);
      const dev = await this.activate(rec);
      try {
        await step(this.settings.progress, `making ${this.settings.fs} on the ${humanSize(rec.size)} base device`, () =>
          makeFilesystem(dev.path, this.settings.fs, this.settings.mkfsArgs),
        );
        this.set = { ...this.set, baseUuid: await filesystemUuid(dev.path) };
      } finally {
        await dm.remove(dev.name, { retry: true });
      }
      await this.store.writeSet(this.set);
      await this.store.put({ ...rec, initialized: true });
      return;
    }
    const dev = await this.activate(base);
    try {
      const uuid = await filesystemUuid(dev.path);
      if (uuid !== this.set.baseUuid) {
        throw new DmError(`the base device's filesystem UUID is '${uuid}', the set recorded '${this.set.baseUuid ?? ''}': the pool's metadata and ${this.store.dir} do not belong together`, { code: 'ERR_DM_CORRUPT', device: dev.name });
      }
    } finally {
      await dm.remove(dev.name, { retry: true });
    }
    if (this.settings.baseSizeGiven && this.settings.baseSize < base.size) {
      throw invalidArg('baseSize', `the base device is ${base.size} bytes; it cannot shrink`);
    }
    // Only a size the caller gave grows the base (Docker's userBaseSize): a
    // reopen without one keeps the base as it is, not the 10G default.
    if (this.settings.baseSizeGiven && this.settings.baseSize > base.size) await this.grow(base, this.settings.baseSize);
  }

  // --- the public operations ---------------------------------------------------

  /** How the REPL and console.log show a set. */
  [inspect.custom](_depth: number, options: InspectOptionsStylized): string {
    const o = { root: this.settings.root, pool: this.pool.name, fs: this.settings.fs, baseSize: humanSize(this.store.get(BASE)?.size ?? 0), devices: this.list(), mounted: Object.fromEntries([...this.mounts].map(([id, m]) => [id, m.target])), closed: this.closed };
    return `DeviceSet ${inspect(o, { ...options, depth: 2 })}`;
  }

  /** The raw records, the base device's (id '') and those pending deletion included: for debugging and checks. */
  records(): DeviceRecord[] {
    return this.store.all().map((r) => ({ ...r }));
  }

  has(id: string): boolean {
    const r = typeof id === 'string' && id !== BASE ? this.store.get(id) : undefined;
    return r !== undefined && !r.deleted;
  }

  /** Ids of every device (not the base, not those pending deletion). */
  list(): string[] {
    return this.store.devices().filter((r) => !r.deleted).map((r) => r.id).sort();
  }

  async get(id: string): Promise<DeviceDetails> {
    this.checkId(id);
    const r = this.record(id);
    const live = await dm.info(this.dmName(id)).catch(() => undefined);
    const m = this.mounts.get(id);
    const d: DeviceDetails = { id, parent: r.parent, deviceId: r.deviceId, size: r.size, path: mapperPath(this.dmName(id)), active: live !== undefined, deleted: r.deleted === true };
    if (m) d.mountPoint = m.target;
    return d;
  }

  /**
   * What the pool has mapped of device `id`, from the thin target's status
   * (see ThinPool.thinUsage: the active device's, or a short read-only
   * activation's when it is not active).
   */
  async usage(id: string): Promise<DeviceUsage> {
    this.checkOpen();
    this.checkId(id);
    return this.serial(async () => {
      const r = this.record(id);
      const u = await this.pool.thinUsage(r.deviceId);
      return { id, deviceId: r.deviceId, size: r.size, mappedBytes: u.mappedBytes, mappedSectors: u.mappedSectors, highestMappedSector: u.highestMappedSector, transactionId: r.transactionId };
    });
  }

  /** Create device `id` as a snapshot of `parent` (default: the base device). */
  async create(id: string, options?: CreateOptions): Promise<DeviceDetails> {
    this.checkOpen();
    this.checkWritable(`create device '${String(id)}'`);
    this.checkId(id);
    const o = checkOptions<CreateOptions>(options, 'options', ['parent', 'size']);
    if (o.parent !== undefined) this.checkId(o.parent, 'options.parent');
    const size = o.size === undefined ? undefined : parseSize(o.size, 'options.size');
    await this.serial(async () => {
      if (this.store.get(id)) throw new DmError(`device '${id}' already exists`, { code: 'EEXIST', device: id });
      const parent = o.parent === undefined ? this.store.get(BASE)! : this.record(o.parent);
      const want = size ?? parent.size;
      if (want < parent.size) throw invalidArg('options.size', `${want} bytes is smaller than the parent's ${parent.size}`);
      if (want % 512 !== 0) throw invalidArg('options.size', `${want} bytes is not a multiple of 512`);
      await this.checkFreeSpace();
      const rec = await this.createThinDevice(id, parent, parent.size);
      if (want > parent.size) {
        try {
          await this.grow(rec, want);
        } catch (e) {
          await this.deleteThinDevice(rec).catch(() => undefined);
          throw e;
        }
      }
    });
    return this.get(id);
  }

  private async checkFreeSpace(): Promise<void> {
    const s = await this.pool.status();
    if (s.mode !== 'rw') {
      const why = { out_of_data_space: 'is out of data space', ro: 'is read-only (metadata trouble)', fail: 'has failed' }[s.mode];
      const advice = s.mode === 'out_of_data_space' ? `grow it (pool.resize({ dataSize }) or 'devmapper pool resize --data-size SIZE')` : 'check its metadata (thin_check) and reload it';
      throw new DmError(`pool '${this.pool.name}' ${why}: ${advice}`, { code: s.mode === 'out_of_data_space' ? 'ERR_DM_POOL_FULL' : 'EROFS', device: this.pool.name });
    }
    const pct = this.settings.minFreeSpace;
    const space = [
      ['data', s.usedDataBlocks * this.pool.blockSize, s.totalDataBlocks * this.pool.blockSize],
      ['metadata', s.usedMetadataBlocks * METADATA_BLOCK_SIZE, s.totalMetadataBlocks * METADATA_BLOCK_SIZE],
    ] as const;
    for (const [what, used, total] of space) {
      if ((total - used) * 100 < total * pct) {
        throw new DmError(
          `pool '${this.pool.name}' has ${humanSize(total - used)} of ${humanSize(total)} ${what} space free, below the minimum of ${pct}%: ` +
            `grow it (pool.resize({ ${what}Size }) or 'devmapper pool resize --${what}-size SIZE'), remove devices, or lower minFreeSpace`,
          { code: 'ERR_DM_POOL_FULL', device: this.pool.name },
        );
      }
    }
  }

  /** Mount device `id` at `target` (made if missing). Mounting again at the same target counts a reference. */
  async mount(id: string, target: string, options?: { readOnly?: boolean; options?: string[] }): Promise<void> {
    this.checkOpen();
    this.checkId(id);
    checkPath(target, 'target');
    const o = checkOptions<{ readOnly: boolean; options: string[] }>(options, 'options', ['readOnly', 'options']);
    if (o.readOnly === false && this.access.readOnly) this.checkWritable(`mount device '${id}' read-write`);
    const readOnly = (checkBoolean(o.readOnly, 'options.readOnly') ?? false) || this.access.readOnly;
    const extra = checkStrings(o.options, 'options.options');
    const where = resolvePath(target);
    await this.serial(async () => {
      const rec = this.record(id);
      const m = this.mounts.get(id);
      if (m) {
        if (m.target !== where) throw new DmError(`device '${id}' is already mounted at ${m.target}`, { code: 'EBUSY', device: id });
        m.count++;
        return;
      }
      const wasActive = (await dm.info(this.dmName(id)).catch(() => undefined)) !== undefined;
      const dev = await this.activate(rec);
      try {
        await mountDevice(dev.path, where, this.settings.fs, { readOnly, data: [...this.settings.mountOptions, ...extra] });
      } catch (e) {
        if (!wasActive) await dm.remove(dev.name).catch(() => undefined);
        throw e;
      }
      const retries = this.settings.xfsNospaceMaxRetries;
      if (retries !== undefined) {
        await setXfsNospaceRetries(dev.minor, retries).catch(async (e: unknown) => {
          await unmountLazily(where).catch(() => undefined);
          if (!wasActive) await dm.remove(dev.name, { retry: true }).catch(() => undefined);
          throw e;
        });
      }
      this.mounts.set(id, { target: where, count: 1 });
    });
  }

  /**
   * Drop one mount reference. The last unmounts (lazily), removes the mount
   * point directory (empty once unmounted) and deactivates the device.
   * Removing the directory is what detaches the copies of the mount that
   * other mount namespaces hold (every container's runtime makes one), as
   * Docker does (moby#34573); without it the device stays open. If the
   * device cannot be deactivated (a process still has a file open on it),
   * the call fails and the set still counts the device as mounted, so
   * calling unmount again once that process is gone finishes the job.
   */
  async unmount(id: string): Promise<void> {
    this.checkId(id);
    await this.serial(async () => {
      const m = this.mounts.get(id);
      if (!m) throw new DmError(`device '${id}' is not mounted by this set`, { code: 'EINVAL', device: id });
      if (m.count > 1) {
        m.count--;
        return;
      }
      await unmountLazily(m.target, { gone: 'ok' }); // an earlier unmount that failed later may have done it
      await removeMountPoint(m.target);
      await this.deactivate(id);
      this.mounts.delete(id);
    });
  }

  /**
   * Remove device `id`: deactivate, discard if configured, delete the thin
   * device. With deferred removal/deletion a busy device goes later.
   */
  async remove(id: string): Promise<void> {
    this.checkOpen();
    this.checkWritable(`remove device '${String(id)}'`);
    this.checkId(id);
    await this.serial(async () => {
      const rec = this.record(id);
      if (this.mounts.has(id)) throw new DmError(`device '${id}' is mounted at ${this.mounts.get(id)!.target}; unmount it first`, { code: 'EBUSY', device: id });
      if (this.settings.discard) await this.discard(rec);
      await this.deactivate(id);
      await this.deleteThinDevice(rec);
    });
  }

  private async discard(rec: DeviceRecord): Promise<void> {
    const name = this.dmName(rec.id);
    const live = await dm.info(name).catch(() => undefined);
    if (live && live.openCount > 0) return; // someone still uses it: discarding would destroy their data
    if (!live) await this.activate(rec);
    await step(this.settings.progress, `discarding the ${humanSize(rec.size)} of '${rec.id}'`, () => dm.discard(name));
  }

  /** Run the deferred-deletion retry now (it also runs every cleanupIntervalMs). */
  cleanup(): Promise<void> {
    if (this.access.readOnly) return Promise.reject(readOnlyError('delete devices pending deletion', this.settings.root));
    return this.serial(() => this.retryDeletions());
  }

  /** The `docker info` storage fields. */
  async info(): Promise<DeviceSetInfo> {
    const [u, version, udev, table] = await Promise.all([this.pool.usage(), dm.version(), udevRunning(), dm.table(this.pool.name)]);
    const [metaDev, dataDev] = (table[0]?.params ?? '').split(' ');
    const base = this.store.get(BASE);
    const info: DeviceSetInfo = {
      poolName: this.pool.name,
      poolBlockSize: this.pool.blockSize,
      baseDeviceSize: base?.size ?? 0,
      backingFilesystem: this.settings.fs,
      dataFile: await devicePath(dataDev ?? '', { missing: 'keep' }),
      metadataFile: await devicePath(metaDev ?? '', { missing: 'keep' }),
      dataSpaceUsed: u.data.used,
      dataSpaceTotal: u.data.total,
      dataSpaceAvailable: u.data.available,
      metadataSpaceUsed: u.metadata.used,
      metadataSpaceTotal: u.metadata.total,
      metadataSpaceAvailable: u.metadata.available,
      thinPoolMinimumFreeSpace: Math.floor((u.data.total * this.settings.minFreeSpace) / 100),
      udevSyncSupported: udev,
      deferredRemovalEnabled: this.settings.deferredRemoval,
      deferredDeletionEnabled: this.settings.deferredDeletion,
      deferredDeletedDeviceCount: this.store.all().filter((r) => r.deleted).length,
      libraryVersion: LIBRARY_VERSION,
      driverVersion: `${version.major}.${version.minor}.${version.patch}`,
      devices: this.list().length,
    };
    if (this.pool.loopBacking) {
      info.dataLoopFile = this.pool.loopBacking.dataFile;
      info.metadataLoopFile = this.pool.loopBacking.metadataFile;
    }
    return info;
  }

  /**
   * Unmount what this set mounted, deactivate its devices, remove the pool if
   * the set made it (loop-backed or from devices), and release the lock.
   * With `keep`, only release the lock: mounts, devices and pool stay for the
   * next open (what a command-line tool does between calls).
   */
  async close(options?: { keep?: boolean }): Promise<void> {
    const keep = checkBoolean(checkOptions<{ keep: boolean }>(options, 'options', ['keep']).keep, 'options.keep') ?? false;
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    try {
      if (keep) return;
      await this.serial(async () => {
        for (const [id, m] of this.mounts) {
          await unmountLazily(m.target).catch(() => undefined);
          await removeMountPoint(m.target).catch(() => undefined);
          this.mounts.delete(id);
        }
        for (const r of this.store.all()) {
          const name = this.dmName(r.id);
          if (this.access.leaveActive.has(name)) continue;
          if (await dm.info(name).catch(() => undefined)) await dm.remove(name, { deferred: this.settings.deferredRemoval, retry: true });
        }
        if (this.ownsPool) await this.pool.destroy();
      });
    } finally {
      await this.store.close();
      await this.lock.close();
    }
  }
}

/**
 * The pool: an existing one, one on given devices, or loop-backed under
 * root/devicemapper. `created`: this call activated the pool device.
 */
async function openPool(root: string, o: Partial<DeviceSetOptions>, recordedName: string | undefined): Promise<{ pool: ThinPool; owns: boolean; created: boolean }> {
  if (o.poolName !== undefined) return { pool: await ThinPool.open(o.poolName), owns: false, created: false };
  const dir = join(root, 'devicemapper');
  const name = recordedName ?? (await defaultPoolName(dir));
  const live = (await dm.info(name).catch(() => undefined))?.activeTable === true;
  const table = { blockSize: o.blockSize, errorIfNoSpace: false };
  if (o.dataDevice !== undefined && o.metadataDevice !== undefined) {
    if (live) return { pool: await ThinPool.open(name), owns: true, created: false };
    const pool = await ThinPool.create({ name, dataDevice: o.dataDevice, metadataDevice: o.metadataDevice, zeroMetadata: recordedName === undefined, ...table });
    return { pool, owns: true, created: true };
  }
  const pool = await ThinPool.createLoopBacked({ dir, name, dataSize: o.dataSize, metadataSize: o.metadataSize, ...table });
  return { pool, owns: true, created: !live };
}

/** One process at a time: an exclusive flock on root/lock holding the owner's pid. */
async function takeLock(root: string): Promise<FileHandle> {
  const path = join(root, 'lock');
  const fh = await open(path, constants.O_RDWR | constants.O_CREAT, 0o600);
  try {
    await sys.lockExclusiveNow(fh.fd, path);
  } catch (e) {
    await fh.close();
    const holder = (await readFile(path, 'utf8').catch(() => '')).trim() || 'unknown';
    if ((e as DmError).errno === osConstants.errno.EWOULDBLOCK) {
      throw new DmError(`the device set under ${root} is open in process ${holder}`, { code: 'ERR_DM_LOCKED', device: root, cause: e });
    }
    throw e;
  }
  await fh.truncate(0);
  await fh.write(`${process.pid}\n`, 0);
  await fh.sync();
  return fh;
}
