// containerd's snapshotter model on a thin pool, as containerd's own
// devmapper snapshotter keeps it: a snapshot without a parent is a new thin
// device with a fresh filesystem; one with a (committed) parent is a thin
// snapshot of it; a view is activated read-only; commit keeps the thin
// device under the new name and deactivates it. Records live in the device
// set's log (metadata-store.ts) and every pool change is a transaction of
// device-set/transactions.ts, so a process killed at any point leaves a
// state the next open repairs.
import { mkdir, rmdir, type FileHandle } from 'node:fs/promises';
import { join, resolve as resolvePath } from 'node:path';
import * as dm from '../dm';
import { DmError, invalidArg } from '../errors';
import { makeFilesystem, mountDevice, unmountNow, type FsType } from '../filesystem';
import { MetadataStore, saveSetIfMoved, type DeviceRecord, type SetRecord } from '../metadata-store';
import { MAX_THIN_ID, type ThinPool } from '../pool/index';
import { parseSize } from '../size';
import { SerialQueue } from '../serial';
import { checkBoolean, checkOptions, checkPath } from '../validate';
import { ensureActive } from '../device-set/activation';
import { mendLeftovers } from '../device-set/leftovers';
import { checkStrings, type PoolChoice } from '../device-set/options';
import { openPool, takeLock } from '../device-set/setup';
import { freeThinId, PoolTransactions, settleRecord } from '../device-set/transactions';
import { snapshotFilter } from './filters';
import type { Mount, SnapshotInfo, SnapshotKind, SnapshotOptions, SnapshotUsage } from './types';

const GiB = 1024 ** 3;

/** Options of Snapshotter.open: where, and the pool as a DeviceSet takes it. */
export interface SnapshotterOptions extends PoolChoice {
  /** Directory holding devicemapper/ (loop files), metadata/ and the lock. */
  root: string;
  /** Size of every snapshot's device (default 10G; containerd's base_image_size). */
  baseSize?: number | string;
  /** Filesystem made on snapshots without a parent (default ext4). */
  fs?: FsType;
  /** Extra mkfs arguments. */
  mkfsArgs?: string[];
  /** Extra options in every Mount. */
  mountOptions?: string[];
  /** Discard a snapshot's blocks before deleting it (containerd's discard_blocks). */
  discard?: boolean;
}

const OPTION_KEYS = [
  'root',
  'baseSize',
  'fs',
  'mkfsArgs',
  'mountOptions',
  'discard',
  'dataSize',
  'metadataSize',
  'blockSize',
  'dataDevice',
  'metadataDevice',
  'poolName',
] as const;

const notFound = (what: string) => new DmError(`${what} does not exist`, { code: 'ERR_DM_NOT_FOUND', device: what });
const exists = (what: string) => new DmError(`${what} already exists`, { code: 'ERR_DM_ALREADY_EXISTS', device: what });
const precondition = (why: string, key: string) => new DmError(why, { code: 'ERR_DM_FAILED_PRECONDITION', device: key });

function checkKey(key: unknown, field = 'key'): string {
  if (typeof key !== 'string' || key.length === 0 || key.length > 4096 || key.includes('\0')) {
    throw invalidArg(field, `${JSON.stringify(key)}: expected a non-empty string without NUL`);
  }
  return key;
}

function checkLabels(labels: unknown, field: string): Record<string, string> {
  if (labels === undefined) return {};
  if (typeof labels !== 'object' || labels === null || Array.isArray(labels)) throw invalidArg(field, 'expected an object of strings');
  for (const [k, v] of Object.entries(labels)) if (typeof v !== 'string') throw invalidArg(`${field}.${k}`, 'expected a string');
  return { ...(labels as Record<string, string>) };
}

/** A snapshot's record: its thin device and containerd's fields. */
type Snap = DeviceRecord & { snapshot: NonNullable<DeviceRecord['snapshot']> };
const isSnap = (r: DeviceRecord | undefined): r is Snap => r?.snapshot !== undefined;

/** containerd's snapshotter model (prepare, view, commit, mounts, usage, walk) on a thin pool. */
export class Snapshotter {
  readonly #queue = new SerialQueue();
  #closed = false;
  readonly #txns: PoolTransactions;

  readonly #o: { root: string; baseSize: number; fs: FsType; mkfsArgs: string[]; mountOptions: string[]; discard: boolean };
  readonly #store: MetadataStore;
  #set: SetRecord;
  readonly #lock: FileHandle;

  private constructor(
    o: { root: string; baseSize: number; fs: FsType; mkfsArgs: string[]; mountOptions: string[]; discard: boolean },
    readonly pool: ThinPool,
    store: MetadataStore,
    set: SetRecord,
    lock: FileHandle,
    /** Device names are `<prefix>-snap-<thin id>`. */
    readonly prefix: string,
  ) {
    this.#o = o;
    this.#store = store;
    this.#set = set;
    this.#lock = lock;
    this.#txns = new PoolTransactions(pool, store);
  }

  /** Open the snapshotter under `root`, making its pool on first use; repairs what a killed process left. */
  static async open(options: SnapshotterOptions): Promise<Snapshotter> {
    const o = checkOptions<SnapshotterOptions>(options, 'options', OPTION_KEYS);
    const root = resolvePath(checkPath(o.root, 'root'));
    const fs = o.fs ?? 'ext4';
    if (fs !== 'ext4' && fs !== 'xfs') throw invalidArg('fs', `'${String(fs)}' is not 'ext4' or 'xfs'`);
    const baseSize = parseSize(o.baseSize ?? 10 * GiB, 'baseSize');
    if (baseSize % 512 !== 0 || baseSize < 16 * 1024 * 1024)
      throw invalidArg('baseSize', `${baseSize} bytes: at least 16M and a multiple of 512`);
    const settings = {
      root,
      baseSize,
      fs,
      mkfsArgs: checkStrings(o.mkfsArgs, 'mkfsArgs'),
      mountOptions: checkStrings(o.mountOptions, 'mountOptions'),
      discard: checkBoolean(o.discard, 'discard') ?? false,
    };
    if ((o.dataDevice === undefined) !== (o.metadataDevice === undefined))
      throw invalidArg('dataDevice', 'give both dataDevice and metadataDevice, or neither');
    for (const d of ['devicemapper', 'metadata', 'mnt']) await mkdir(join(root, d), { recursive: true });
    const lock = await takeLock(root);
    let store: MetadataStore | undefined;
    let activated: ThinPool | undefined;
    try {
      store = await MetadataStore.open(join(root, 'metadata'));
      const recorded = await store.readSet();
      if (recorded && o.fs !== undefined && recorded.fs !== fs)
        throw invalidArg('fs', `the snapshotter under ${root} was made with ${recorded.fs}`);
      const { pool, created } = await openPool(root, o, recorded?.poolName, undefined);
      if (created) activated = pool;
      const set: SetRecord = recorded ?? { version: 1, poolName: pool.name, fs, nextDeviceId: 1 };
      if (set.poolName !== pool.name)
        throw new DmError(`the snapshotter under ${root} belongs to pool '${set.poolName}', not '${pool.name}'`, {
          code: 'ERR_DM_CORRUPT',
          device: pool.name,
        });
      if (!recorded) await store.writeSet(set);
      const prefix = pool.name.endsWith('-pool') ? pool.name.slice(0, -'-pool'.length) : pool.name;
      const s = new Snapshotter({ ...settings, fs: set.fs }, pool, store, set, lock, prefix);
      await mendLeftovers(root, prefix);
      await s.#txns.recover({
        deactivate: (t) => dm.remove(s.#dmName(t.deviceId), { retry: true }).then(() => undefined),
        forget: (t, fate) => settleRecord(store!, t, fate),
      });
      // A snapshot without a parent whose filesystem was never made: as if prepare never ran.
      for (const r of store.all().filter((r) => isSnap(r) && r.initialized === false)) await s.#drop(r);
      return s;
    } catch (e) {
      await activated?.destroy().catch(() => undefined);
      await store?.close();
      await lock.close();
      throw e;
    }
  }

  /** A new active snapshot `key` (read-write), of committed `parent` or empty; resolves with how to mount it. */
  prepare(key: string, parent?: string, options?: SnapshotOptions): Promise<Mount[]> {
    return this.#make('active', key, parent, options);
  }

  /** A new read-only view `key` of committed `parent` (or of an empty filesystem). */
  view(key: string, parent?: string, options?: SnapshotOptions): Promise<Mount[]> {
    return this.#make('view', key, parent, options);
  }

  /** How to mount active snapshot or view `key` (its device is activated if it is not). */
  async mounts(key: string): Promise<Mount[]> {
    this.#checkOpen();
    checkKey(key);
    return this.#serial(async () => {
      const r = this.#get(key);
      if (r.snapshot.kind === 'committed')
        throw precondition(`snapshot '${key}' is committed: prepare or view a child of it to mount it`, key);
      await this.#activate(r, true);
      return this.#mountsOf(r);
    });
  }

  /**
   * Commit active snapshot `key` as `name`: its thin device stays under the
   * new name (deactivated), usable as a parent. Unmount it first.
   */
  async commit(name: string, key: string, options?: SnapshotOptions): Promise<void> {
    this.#checkOpen();
    checkKey(name, 'name');
    checkKey(key);
    const labels = checkLabels(checkOptions<SnapshotOptions>(options, 'options', ['labels']).labels, 'options.labels');
    await this.#serial(async () => {
      const r = this.#get(key);
      if (r.snapshot.kind !== 'active')
        throw precondition(
          `snapshot '${key}' is ${r.snapshot.kind === 'view' ? 'a view' : 'committed'}: only an active snapshot commits`,
          key,
        );
      if (this.#store.get(name)) throw exists(`snapshot '${name}'`);
      const usage = (await this.pool.thinUsage(r.deviceId)).mappedBytes;
      const live = await dm.info(this.#dmName(r.deviceId)).catch(() => undefined);
      if (live) {
        await dm.remove(this.#dmName(r.deviceId), { retry: true }).catch((e: unknown) => {
          if (e instanceof DmError && e.code === 'EBUSY')
            throw precondition(`snapshot '${key}' is still mounted or open: unmount it before commit`, key);
          throw e;
        });
      }
      const now = new Date().toISOString();
      await this.#store.replace(key, { ...r, id: name, snapshot: { kind: 'committed', labels, created: now, updated: now, usage } });
    });
  }

  /** Remove snapshot `key` and its thin device; one that has children cannot go. */
  async remove(key: string): Promise<void> {
    this.#checkOpen();
    checkKey(key);
    await this.#serial(async () => {
      const r = this.#get(key);
      const child = this.#store.all().find((c) => c.parent === key);
      if (child) throw precondition(`snapshot '${key}' has children (${child.id}): remove them first`, key);
      await this.#drop(r);
    });
  }

  /** The raw records (thin ids, transactions, containerd's fields): for debugging and checks. */
  records(): DeviceRecord[] {
    return this.#store.all().map((r) => ({ ...r }));
  }

  /** Snapshot `key`'s info. */
  async stat(key: string): Promise<SnapshotInfo> {
    this.#checkOpen();
    checkKey(key);
    return infoOf(this.#get(key));
  }

  /**
   * Change a snapshot's labels (the only field that changes): `fieldPaths`
   * 'labels' (all of them) or 'labels.KEY' (one); none: all labels. Resolves
   * with the info after the change.
   */
  async update(info: Partial<SnapshotInfo> & { name: string }, ...fieldPaths: string[]): Promise<SnapshotInfo> {
    this.#checkOpen();
    if (typeof info !== 'object' || info === null) throw invalidArg('info', 'expected { name, labels? }');
    const key = checkKey(info.name, 'info.name');
    const given = checkLabels(info.labels, 'info.labels');
    for (const p of fieldPaths) {
      if (p !== 'labels' && !p.startsWith('labels.'))
        throw invalidArg('fieldPaths', `'${p}' cannot be updated (only labels and labels.KEY)`);
    }
    return this.#serial(async () => {
      const r = this.#get(key);
      let labels = { ...r.snapshot.labels };
      if (fieldPaths.length === 0 || fieldPaths.includes('labels')) labels = given;
      for (const p of fieldPaths.filter((p) => p.startsWith('labels.'))) {
        const k = p.slice('labels.'.length);
        if (k in given) labels[k] = given[k]!;
        else delete labels[k];
      }
      const next: Snap = { ...r, snapshot: { ...r.snapshot, labels, updated: new Date().toISOString() } };
      await this.#store.put(next);
      return infoOf(next);
    });
  }

  /** Bytes the pool has mapped for `key` (for a committed snapshot: at its commit). */
  async usage(key: string): Promise<SnapshotUsage> {
    this.#checkOpen();
    checkKey(key);
    const r = this.#get(key);
    if (r.snapshot.kind === 'committed' && r.snapshot.usage !== undefined) return { size: r.snapshot.usage, inodes: 0 };
    return { size: (await this.pool.thinUsage(r.deviceId)).mappedBytes, inodes: 0 };
  }

  /** Call `fn` with the info of every snapshot that passes any of `filters` (containerd's syntax; none: all). */
  async walk(fn: (info: SnapshotInfo) => void | Promise<void>, ...filters: string[]): Promise<void> {
    this.#checkOpen();
    if (typeof fn !== 'function') throw invalidArg('fn', 'expected a function');
    const pass = snapshotFilter(filters);
    for (const r of this.#store.all()) {
      if (!isSnap(r)) continue;
      const info = infoOf(r);
      if (pass(info)) await fn(info);
    }
  }

  /** Deactivate committed snapshots' devices and remove devices of ours that no snapshot holds. */
  async cleanup(): Promise<void> {
    this.#checkOpen();
    await this.#serial(async () => {
      const held = new Map(
        this.#store
          .all()
          .filter(isSnap)
          .map((r) => [this.#dmName(r.deviceId), r]),
      );
      for (const d of await dm.list()) {
        if (!d.name.startsWith(`${this.prefix}-snap-`)) continue;
        const r = held.get(d.name);
        if (!r || r.snapshot.kind === 'committed') await dm.remove(d.name, { retry: true }).catch(() => undefined);
      }
    });
  }

  /** Release the lock; devices and the pool stay (containers keep using their snapshots). A second close does nothing. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#serial(async () => undefined);
    await saveSetIfMoved(this.#store, this.#set);
    await this.#store.close();
    await this.#lock.close();
  }

  // ---- private ------------------------------------------------------------

  #serial<T>(body: () => Promise<T>): Promise<T> {
    return this.#queue.run(body);
  }

  #checkOpen(): void {
    if (this.#closed) throw new DmError('the snapshotter is closed', { code: 'ERR_DM_INVALID_ARG' });
  }

  #dmName(thinId: number): string {
    return `${this.prefix}-snap-${thinId}`;
  }

  #get(key: string): Snap {
    const r = this.#store.get(key);
    if (!isSnap(r)) throw notFound(`snapshot '${key}'`);
    return r;
  }

  #mountsOf(r: Snap): Mount[] {
    const options = [...this.#o.mountOptions];
    if (r.snapshot.kind === 'view') options.push('ro');
    if (this.#set.fs === 'xfs') options.push('nouuid');
    return [{ type: this.#set.fs, source: `/dev/mapper/${this.#dmName(r.deviceId)}`, options }];
  }

  /** The snapshot's device, active (read-only for a view); `lookFirst` when it most likely is already. */
  async #activate(r: Snap, lookFirst = false): Promise<void> {
    const o = { name: this.#dmName(r.deviceId), size: r.size, readOnly: r.snapshot.kind === 'view' };
    await ensureActive(this.pool, r.deviceId, o, { lookFirst });
  }

  async #make(kind: SnapshotKind, key: string, parent: string | undefined, options: SnapshotOptions | undefined): Promise<Mount[]> {
    this.#checkOpen();
    checkKey(key);
    if (parent !== undefined && parent !== '') checkKey(parent, 'parent');
    const labels = checkLabels(checkOptions<SnapshotOptions>(options, 'options', ['labels']).labels, 'options.labels');
    return this.#serial(async () => {
      if (this.#store.get(key)) throw exists(`snapshot '${key}'`);
      const from = parent ? this.#store.get(parent) : undefined;
      if (parent && !isSnap(from)) throw notFound(`parent snapshot '${parent}'`);
      if (isSnap(from) && from.snapshot.kind !== 'committed') throw invalidArg('parent', `'${parent}' is not a committed snapshot`);
      const now = new Date().toISOString();
      let made: Snap | undefined;
      await this.#txns.create({
        key,
        originThinId: isSnap(from) ? from.deviceId : null,
        allocate: () => {
          const free = freeThinId(new Set(this.#store.all().map((r) => r.deviceId)), this.#set.nextDeviceId);
          if (free === undefined)
            throw new DmError(`pool '${this.pool.name}' has no free thin id`, { code: 'ENOSPC', device: this.pool.name });
          return free;
        },
        skipped: (thinId) => this.#advance(thinId),
        record: async (deviceId, transactionId) => {
          made = {
            id: key,
            deviceId,
            size: isSnap(from) ? from.size : this.#o.baseSize,
            parent: isSnap(from) ? from.id : null,
            transactionId,
            ...(isSnap(from) ? {} : { initialized: false }),
            snapshot: { kind, labels, created: now, updated: now },
          };
          await this.#store.put(made);
        },
        unrecord: () => this.#store.delete(key),
      });
      const r = made!;
      this.#advance(r.deviceId); // a hint (a used id is skipped): written at close, not per snapshot
      try {
        if (r.initialized === false) {
          await this.#format(r);
          await this.#activate(r, true); // format leaves it active, unless a view
        } else await this.#activate(r);
      } catch (e) {
        await this.#drop(r).catch(() => undefined);
        throw e;
      }
      return this.#mountsOf(r);
    });
  }

  /** Make the filesystem of a snapshot without a parent (on a read-write activation), then record it made. */
  async #format(r: Snap): Promise<void> {
    const name = this.#dmName(r.deviceId);
    const dev = await this.pool.activate(r.deviceId, { name, size: r.size });
    try {
      await makeFilesystem(dev.path, this.#set.fs, this.#o.mkfsArgs);
      // An image's root holds nothing but the image: drop ext4's lost+found, as containerd does.
      const scratch = join(this.#o.root, 'mnt', `.format-${r.deviceId}`);
      await mountDevice(dev.path, scratch, this.#set.fs);
      try {
        await rmdir(join(scratch, 'lost+found')).catch((e: NodeJS.ErrnoException) => {
          if (e.code !== 'ENOENT') throw e;
        });
      } finally {
        await unmountNow(scratch);
      }
    } finally {
      if (r.snapshot.kind === 'view') await dm.remove(name, { retry: true }); // a view is activated read-only after
    }
    delete r.initialized;
    await this.#store.put(r);
  }

  /** Deactivate, discard if asked, and delete snapshot `r`'s thin device and record, in a transaction. */
  async #drop(r: DeviceRecord): Promise<void> {
    const name = this.#dmName(r.deviceId);
    const live = await dm.info(name).catch(() => undefined);
    if (live && this.#o.discard && live.openCount === 0 && live.activeTable) await dm.discard(name).catch(() => undefined);
    if (live) {
      await dm.remove(name, { retry: true }).catch((e: unknown) => {
        if (e instanceof DmError && e.code === 'EBUSY')
          throw precondition(`snapshot '${r.id}' is still mounted or open: unmount it first`, r.id);
        throw e;
      });
    }
    await this.#txns.delete({ key: r.id, thinId: r.deviceId, deferBusy: false, record: () => this.#store.delete(r.id) });
  }

  #advance(thinId: number): void {
    this.#set = { ...this.#set, nextDeviceId: (thinId + 1) % (MAX_THIN_ID + 1) };
  }
}

function infoOf(r: Snap): SnapshotInfo {
  return {
    name: r.id,
    parent: r.parent ?? '',
    kind: r.snapshot.kind,
    labels: { ...r.snapshot.labels },
    created: new Date(r.snapshot.created),
    updated: new Date(r.snapshot.updated),
  };
}
