// Docker's devicemapper graph driver as a library: a base thin device with a
// filesystem, devices named by string ids as snapshots of it (or of each
// other), mount/unmount with reference counts, and records that agree with
// the pool after a crash at any point (every pool change is a transaction:
// transactions.ts). Options: options.ts; the pool and the lock: setup.ts; a
// store Docker itself left: docker-store.ts.
import { mkdir, type FileHandle } from 'node:fs/promises';
import { join, resolve as resolvePath } from 'node:path';
import { inspect, type InspectOptionsStylized } from 'node:util';
import * as dm from '../dm';
import { DmError, invalidArg } from '../errors';
import { mountDevice, removeMountPoint, setXfsNospaceRetries, unmountLazily } from '../filesystem';
import { humanSize } from '../format';
import { MetadataStore, saveSetIfMoved, type DeviceRecord, type RecordStore, type SetRecord } from '../metadata-store';
import { mapperPath } from '../nodes';
import type { ThinPool } from '../pool/index';
import { step } from '../progress';
import { parseSize } from '../size';
import { SerialQueue } from '../serial';
import { checkBoolean, checkOptions, checkPath, DM_NAME_MAX } from '../validate';
import { checkDockerOptions, openDockerStore, readOnlyError, READ_WRITE, refuseDockerStore, type SetAccess } from './docker-store';
import { checkFsOptions, checkStrings, parseOptions, type CreateOptions, type DeviceSetOptions, type Settings } from './options';
import { setInfo } from './info';
import { BASE, SetDevices } from './devices';
import { mendLeftovers, mountsOf } from './leftovers';
import { openPool, takeLock } from './setup';
import { checkPoolSpace } from './space';
import { settleRecord } from './transactions';
import type { DeviceDetails, DeviceSetInfo, DeviceUsage } from './types';

const ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/**
 * Docker's devicemapper graph driver as a library: open a set under a root,
 * create devices as snapshots by string id, mount and unmount them, remove
 * them, read the `docker info` fields.
 */
export class DeviceSet {
  /** Mounts made through this object: id → mount point and reference count. */
  readonly #mounts = new Map<string, { target: string; count: number }>();
  readonly #queue = new SerialQueue();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  readonly #devices: SetDevices;
  readonly #settings: Settings;
  readonly #ownsPool: boolean;
  readonly #lock: FileHandle;
  /** Read-only (a Docker store), and the devices it found active and leaves so. */
  readonly #access: SetAccess;

  private constructor(
    settings: Settings,
    readonly pool: ThinPool,
    ownsPool: boolean,
    store: RecordStore,
    set: SetRecord,
    lock: FileHandle,
    /** Device-mapper names are `<prefix>-<id>`; the base device is `<prefix>-base`. */
    readonly prefix: string,
    access: SetAccess = READ_WRITE,
  ) {
    this.#settings = settings;
    this.#ownsPool = ownsPool;
    this.#lock = lock;
    this.#access = access;
    this.#devices = new SetDevices(settings, pool, store, set, prefix, access);
  }

  /** Open the set under `root`, creating it (pool, base device, filesystem) on first use. */
  static async open(options: DeviceSetOptions): Promise<DeviceSet> {
    const { settings, given: o, directLvm } = parseOptions(options);
    const { root, fs } = settings;
    if (o.layout === 'docker') return DeviceSet.#openDocker(settings, o);
    await refuseDockerStore(root);

    for (const d of ['devicemapper', 'metadata', 'mnt']) await mkdir(join(root, d), { recursive: true });
    const lock = await takeLock(root);
    let activated: ThinPool | undefined; // a pool this call brought up, taken down again if open fails
    let store: MetadataStore | undefined;
    try {
      store = await MetadataStore.open(join(root, 'metadata'));
      const recorded = await store.readSet();
      checkFsOptions(settings, recorded?.fs ?? fs);
      const { pool, owns, created } = await openPool(root, o, recorded?.poolName, directLvm);
      if (created) activated = pool;
      const set: SetRecord = recorded ?? { version: 1, poolName: pool.name, fs, nextDeviceId: 1 };
      if (set.poolName !== pool.name)
        throw new DmError(`the set under ${root} belongs to pool '${set.poolName}', not '${pool.name}'`, {
          code: 'ERR_DM_CORRUPT',
          device: pool.name,
        });
      if (recorded && recorded.fs !== fs && o.fs !== undefined)
        throw invalidArg('fs', `the set under ${root} was made with ${recorded.fs}`);
      settings.fs = set.fs;
      if (!recorded) await store.writeSet(set);
      const prefix = pool.name.endsWith('-pool') ? pool.name.slice(0, -'-pool'.length) : pool.name;
      const ds = new DeviceSet(settings, pool, owns, store, set, lock, prefix);
      await mendLeftovers(root, prefix);
      for (const [id, target] of await mountsOf(
        ds.#devices.store
          .all()
          .filter((r) => r.id !== BASE)
          .map((r) => r.id),
        (id) => mapperPath(ds.#devices.dmName(id)),
      )) {
        ds.#mounts.set(id, { target, count: 1 });
      }
      await ds.#devices.txns.recover({
        deactivate: (t) => dm.remove(ds.#devices.dmName(t.id)).then(() => undefined),
        forget: (t, fate) => settleRecord(ds.#devices.store, t, fate),
      });
      await ds.#devices.setUpBase();
      await ds.#devices.retryDeletions();
      ds.#timer = setInterval(() => void ds.#serial(() => ds.#devices.retryDeletions()).catch(() => undefined), settings.cleanupIntervalMs);
      ds.#timer.unref();
      return ds;
    } catch (e) {
      await activated?.destroy().catch(() => undefined);
      await store?.close();
      await lock.close();
      throw e;
    }
  }

  /** A store of Docker's devicemapper driver, read-only (lib/device-set/docker-store.ts): nothing under root is written. */
  static async #openDocker(settings: Settings, o: Partial<DeviceSetOptions>): Promise<DeviceSet> {
    checkDockerOptions(o);
    const d = await openDockerStore(settings.root, { poolName: o.poolName, fs: o.fs });
    // No findMounts(): mounts found now are Docker's own, and close() must not unmount them.
    return new DeviceSet({ ...settings, fs: d.fs }, d.pool, d.owns, d.store, d.set, d.lock, d.prefix, d.access);
  }

  #checkWritable(what: string): void {
    if (this.#access.readOnly) throw readOnlyError(what, this.#settings.root);
  }

  #serial<T>(body: () => Promise<T>): Promise<T> {
    return this.#queue.run(body);
  }

  #checkOpen(): void {
    if (this.#closed) throw new DmError('the device set is closed', { code: 'ERR_DM_INVALID_ARG' });
  }

  #checkId(id: unknown, field = 'id'): string {
    if (typeof id !== 'string' || !ID.test(id))
      throw invalidArg(field, `${JSON.stringify(id)} must start with a letter or digit and hold only letters, digits, '_', '.' and '-'`);
    if (id === 'base') throw invalidArg(field, "'base' names the base device");
    if (this.#devices.dmName(id).length > DM_NAME_MAX)
      throw invalidArg(field, `'${id}' makes the device name longer than ${DM_NAME_MAX} bytes`);
    return id;
  }

  // --- the public operations ---------------------------------------------------

  /** How the REPL and console.log show a set. */
  [inspect.custom](_depth: number, options: InspectOptionsStylized): string {
    const o = {
      root: this.#settings.root,
      pool: this.pool.name,
      fs: this.#settings.fs,
      baseSize: humanSize(this.#devices.store.get(BASE)?.size ?? 0),
      devices: this.list(),
      mounted: Object.fromEntries([...this.#mounts].map(([id, m]) => [id, m.target])),
      closed: this.#closed,
    };
    return `DeviceSet ${inspect(o, { ...options, depth: 2 })}`;
  }

  /** The raw records, the base device's (id '') and those pending deletion included: for debugging and checks. */
  records(): DeviceRecord[] {
    return this.#devices.store.all().map((r) => ({ ...r }));
  }

  /** Whether device `id` exists (pending deletion counts as gone). */
  has(id: string): boolean {
    const r = typeof id === 'string' && id !== BASE ? this.#devices.store.get(id) : undefined;
    return r !== undefined && !r.deleted;
  }

  /** Ids of every device (not the base, not those pending deletion). */
  list(): string[] {
    return this.#devices.store
      .devices()
      .filter((r) => !r.deleted)
      .map((r) => r.id)
      .sort();
  }

  /** Device `id`'s record and whether it is active and mounted; ENOENT when there is none. */
  async get(id: string): Promise<DeviceDetails> {
    this.#checkId(id);
    const r = this.#devices.record(id);
    const live = this.#devices.knownInactive(id) ? undefined : await dm.info(this.#devices.dmName(id)).catch(() => undefined);
    const m = this.#mounts.get(id);
    const d: DeviceDetails = {
      id,
      parent: r.parent,
      thinId: r.deviceId,
      size: r.size,
      path: mapperPath(this.#devices.dmName(id)),
      active: live !== undefined,
      deleted: r.deleted === true,
    };
    if (m) d.mountPoint = m.target;
    return d;
  }

  /**
   * What the pool has mapped of device `id`, from the thin target's status
   * (see ThinPool.thinUsage: the active device's, or a short read-only
   * activation's when it is not active).
   */
  async usage(id: string): Promise<DeviceUsage> {
    this.#checkOpen();
    this.#checkId(id);
    return this.#serial(async () => {
      const r = this.#devices.record(id);
      const u = await this.pool.thinUsage(r.deviceId);
      return {
        id,
        thinId: r.deviceId,
        size: r.size,
        mappedBytes: u.mappedBytes,
        mappedSectors: u.mappedSectors,
        highestMappedSector: u.highestMappedSector,
        transactionId: r.transactionId,
      };
    });
  }

  /** Create device `id` as a snapshot of `parent` (default: the base device). */
  async create(id: string, options?: CreateOptions): Promise<DeviceDetails> {
    this.#checkOpen();
    this.#checkWritable(`create device '${String(id)}'`);
    this.#checkId(id);
    const o = checkOptions<CreateOptions>(options, 'options', ['parent', 'size']);
    if (o.parent !== undefined) this.#checkId(o.parent, 'options.parent');
    const size = o.size === undefined ? undefined : parseSize(o.size, 'options.size');
    await this.#serial(async () => {
      if (this.#devices.store.get(id)) throw new DmError(`device '${id}' already exists`, { code: 'EEXIST', device: id });
      const parent = o.parent === undefined ? this.#devices.store.get(BASE)! : this.#devices.record(o.parent);
      const want = size ?? parent.size;
      if (want < parent.size) throw invalidArg('options.size', `${want} bytes is smaller than the parent's ${parent.size}`);
      if (want % 512 !== 0) throw invalidArg('options.size', `${want} bytes is not a multiple of 512`);
      const status = checkPoolSpace(await this.pool.status(), this.pool, this.#settings.minFreeSpace);
      const rec = await this.#devices.newDevice(id, parent, parent.size, status);
      if (want > parent.size) {
        try {
          await this.#devices.grow(rec, want);
        } catch (e) {
          await this.#devices.deleteDevice(rec).catch(() => undefined);
          throw e;
        }
      }
    });
    return this.get(id);
  }

  /** Mount device `id` at `target` (made if missing). Mounting again at the same target counts a reference. */
  async mount(id: string, target: string, options?: { readOnly?: boolean; options?: string[] }): Promise<void> {
    this.#checkOpen();
    this.#checkId(id);
    checkPath(target, 'target');
    const o = checkOptions<{ readOnly: boolean; options: string[] }>(options, 'options', ['readOnly', 'options']);
    if (o.readOnly === false && this.#access.readOnly) this.#checkWritable(`mount device '${id}' read-write`);
    const readOnly = (checkBoolean(o.readOnly, 'options.readOnly') ?? false) || this.#access.readOnly;
    const extra = checkStrings(o.options, 'options.options');
    const where = resolvePath(target);
    await this.#serial(async () => {
      const rec = this.#devices.record(id);
      const m = this.#mounts.get(id);
      if (m) {
        if (m.target !== where) throw new DmError(`device '${id}' is already mounted at ${m.target}`, { code: 'EBUSY', device: id });
        m.count++;
        return;
      }
      const { device: dev, made } = await this.#devices.activateDevice(rec);
      try {
        await mountDevice(dev.path, where, this.#settings.fs, { readOnly, data: [...this.#settings.mountOptions, ...extra] });
      } catch (e) {
        if (made) await dm.remove(dev.name).catch(() => undefined);
        throw e;
      }
      const retries = this.#settings.xfsNospaceMaxRetries;
      if (retries !== undefined) {
        await setXfsNospaceRetries(dev.minor, retries).catch(async (e: unknown) => {
          await unmountLazily(where).catch(() => undefined);
          if (made) await dm.remove(dev.name, { retry: true }).catch(() => undefined);
          throw e;
        });
      }
      this.#mounts.set(id, { target: where, count: 1 });
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
    this.#checkId(id);
    await this.#serial(async () => {
      const m = this.#mounts.get(id);
      if (!m) throw new DmError(`device '${id}' is not mounted by this set`, { code: 'EINVAL', device: id });
      if (m.count > 1) {
        m.count--;
        return;
      }
      await unmountLazily(m.target, { gone: 'ok' }); // an earlier unmount that failed later may have done it
      await removeMountPoint(m.target);
      await this.#devices.deactivateDevice(id);
      this.#mounts.delete(id);
    });
  }

  /**
   * Remove device `id`: deactivate, discard if configured, delete the thin
   * device. With deferred removal/deletion a busy device goes later.
   */
  async remove(id: string): Promise<void> {
    this.#checkOpen();
    this.#checkWritable(`remove device '${String(id)}'`);
    this.#checkId(id);
    await this.#serial(async () => {
      const rec = this.#devices.record(id);
      if (this.#mounts.has(id))
        throw new DmError(`device '${id}' is mounted at ${this.#mounts.get(id)!.target}; unmount it first`, { code: 'EBUSY', device: id });
      if (this.#settings.discard) await this.#discard(rec);
      await this.#devices.deactivateDevice(id);
      await this.#devices.deleteDevice(rec);
    });
  }

  async #discard(rec: DeviceRecord): Promise<void> {
    const name = this.#devices.dmName(rec.id);
    const live = await dm.info(name).catch(() => undefined);
    if (live && live.openCount > 0) return; // someone still uses it: discarding would destroy their data
    if (!live) await this.#devices.activateDevice(rec);
    await step(this.#settings.progress, `discarding the ${humanSize(rec.size)} of '${rec.id}'`, () => dm.discard(name));
  }

  /** Run the deferred-deletion retry now (it also runs every cleanupIntervalMs). */
  cleanup(): Promise<void> {
    if (this.#access.readOnly) return Promise.reject(readOnlyError('delete devices pending deletion', this.#settings.root));
    return this.#serial(() => this.#devices.retryDeletions());
  }

  /** The `docker info` storage fields. */
  async info(): Promise<DeviceSetInfo> {
    const records = this.#devices.store.all();
    return setInfo(this.pool, this.#settings, {
      baseSize: this.#devices.store.get(BASE)?.size ?? 0,
      devices: this.list().length,
      deferredDeleted: records.filter((r) => r.deleted).length,
    });
  }

  /**
   * Unmount what this set mounted, deactivate its devices, remove the pool if
   * the set made it (loop-backed or from devices), and release the lock.
   * With `keep`, only release the lock: mounts, devices and pool stay for the
   * next open (what a command-line tool does between calls).
   */
  async close(options?: { keep?: boolean }): Promise<void> {
    const keep = checkBoolean(checkOptions<{ keep: boolean }>(options, 'options', ['keep']).keep, 'options.keep') ?? false;
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    try {
      if (keep) return;
      await this.#serial(async () => {
        for (const [id, m] of this.#mounts) {
          await unmountLazily(m.target).catch(() => undefined);
          await removeMountPoint(m.target).catch(() => undefined);
          this.#mounts.delete(id);
        }
        for (const r of this.#devices.store.all()) {
          const name = this.#devices.dmName(r.id);
          if (this.#access.leaveActive.has(name)) continue;
          if (await dm.info(name).catch(() => undefined)) await dm.remove(name, { deferred: this.#settings.deferredRemoval, retry: true });
        }
        if (this.#ownsPool) await this.pool.destroy();
      });
    } finally {
      await saveSetIfMoved(this.#devices.store, this.#devices.set);
      await this.#devices.store.close();
      await this.#lock.close();
    }
  }
}
