// ThinPool: one thin pool, as its user sees it. The work lives beside it:
// limits.ts (options and their checks), create.ts (bringing a pool up),
// status.ts (status and usage as data), backing.ts (loop files or devices
// underneath), devices.ts (its thin devices and the one-trip operations),
// registry.ts (what every ThinPool object of a pool shares), watch.ts.
import { stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { inspect, type InspectOptionsStylized } from 'node:util';
import * as batch from '../batch';
import * as dm from '../dm';
import { DmError, invalidArg } from '../errors';
import { humanSize } from '../format';
import * as loop from '../loop';
import { checkProgress, step } from '../progress';
import { parseSize } from '../size';
import { thinPool as poolGrammar, type ThinPoolParams } from '../targets/thin-pool';
import * as msg from '../targets/thin-pool-messages';
import type { PoolMessage } from '../targets/thin-pool-messages';
import { checkBoolean, checkName, checkOptions, checkUint, type DmName, type Sectors, type ThinId } from '../validate';
import { deviceSize, devicePath, growFile, hostFree, type LoopBacking } from './backing';
import { directParts, loopBackedParts, openParts, type PoolParts } from './create';
import { PoolDevices, type ThinDevice } from './devices';
import {
  checkActivate,
  checkMetadataSize,
  checkThinChange,
  checkThinId,
  MAX_THIN_ID,
  poolSectors,
  SECTOR,
  type ActivateOptions,
  type DirectOptions,
  type LoopBackedOptions,
  type ResizeOptions,
  type ThinChangeOptions,
  type ThinDeviceOptions,
} from './limits';
import { serialised } from './registry';
import { toPoolStatus, toPoolUsage, type PoolStatus, type PoolUsage, type ThinUsage } from './status';
import { PoolWatcher, type WatchOptions } from './watch';

/** deleteThin's bound for a thin id the kernel still holds open: libdevmapper's remove-retry bound. */
const DELETE_RETRY = { attempts: 25, delayMs: 200 };

/**
 * One thin pool: bring it up (createLoopBacked, create) or open it, make,
 * snapshot, activate and delete its thin devices, read its status and usage,
 * grow it, watch its events, take it down.
 */
export class ThinPool {
  /** Device-mapper name of the pool. */
  readonly name: DmName;
  /** Its node, /dev/mapper/NAME. */
  readonly path: string;
  /** The sparse files behind a loop-backed pool. */
  readonly loopBacking: LoopBacking | undefined;
  #params: ThinPoolParams;
  #sectors: Sectors;
  readonly #devices: PoolDevices;
  #nextId = 0;

  private constructor(parts: PoolParts) {
    this.name = parts.name;
    this.path = parts.path;
    this.loopBacking = parts.loopBacking;
    this.#params = parts.params;
    this.#sectors = parts.sectors;
    this.#devices = new PoolDevices(parts.name, parts.path);
  }

  /**
   * A pool on `dir/data` and `dir/metadata` sparse files attached to loop
   * devices (created on first use). If the pool device already exists it is
   * opened; if the files exist they are reattached without wiping (and grown
   * to a larger `dataSize` / `metadataSize` given).
   */
  static async createLoopBacked(options: LoopBackedOptions): Promise<ThinPool> {
    const { parts, resize } = await loopBackedParts(options);
    const pool = new ThinPool(parts);
    if (resize) await pool.resize(resize);
    return pool;
  }

  /** A pool on given block devices (Docker's direct-lvm with dm.datadev / dm.metadatadev). */
  static async create(options: DirectOptions): Promise<ThinPool> {
    return new ThinPool(await directParts(options));
  }

  /** An existing pool device (Docker's dm.thinpooldev). */
  static async open(name: string): Promise<ThinPool> {
    return new ThinPool(await openParts(name));
  }

  /** Data block size in bytes. */
  get blockSize(): number {
    return this.#params.dataBlockSectors * SECTOR;
  }

  /** Size of the data area in bytes. */
  get dataSize(): number {
    return this.#sectors * SECTOR;
  }

  get lowWaterMark(): number {
    return this.#params.lowWaterMark;
  }

  /** Feature arguments of the pool table, in order. */
  get features(): readonly string[] {
    return this.#params.features;
  }

  /** How the REPL and console.log show a pool: sizes for people. */
  [inspect.custom](_depth: number, options: InspectOptionsStylized): string {
    const o = {
      path: this.path,
      blockSize: humanSize(this.blockSize),
      dataSize: humanSize(this.dataSize),
      lowWaterMark: this.lowWaterMark,
      features: this.features,
      dataDevice: this.#params.dataDevice,
      metadataDevice: this.#params.metadataDevice,
      ...(this.loopBacking ? { loopBacking: this.loopBacking } : {}),
    };
    return `ThinPool '${this.name}' ${inspect(o, { ...options, depth: 2 })}`;
  }

  /**
   * The pool's status, parsed. The kernel commits the pool's metadata before
   * it reports, unless `noFlush` (the transaction id and mode are current
   * either way: each message commits).
   */
  async status(options?: { noFlush?: boolean }): Promise<PoolStatus> {
    const [line] = await dm.status(this.name, options?.noFlush ? { noFlush: true } : undefined);
    if (!line || line.type !== 'thin-pool')
      throw new DmError(`'${this.name}' has no thin-pool status`, { code: 'ERR_DM_DECODE', device: this.name });
    return toPoolStatus(line.params, this.#params.lowWaterMark);
  }

  /** Bytes used, total and available, for data and metadata (available: see SpaceUsage). */
  async usage(): Promise<PoolUsage> {
    const b = this.loopBacking;
    const [s, free] = await Promise.all([
      this.status(),
      b && Promise.all([hostFree(b.dataFile), hostFree(b.metadataFile)]).then(([data, metadata]) => ({ data, metadata })),
    ]);
    return toPoolUsage(s, this.blockSize, free);
  }

  /** A thin id this process has not used yet (another process may still hold it: createThin() without an id retries). */
  nextFreeId(): ThinId {
    const id = this.#nextId as ThinId;
    this.#nextId = (this.#nextId + 1) % (MAX_THIN_ID + 1);
    return id;
  }

  /**
   * Create thin device `thinId` (or the next free id); resolves with the id.
   * With `options.transactionId`, the pool's transaction id moves in the same
   * trip; if that fails, the thin device is deleted again.
   */
  async createThin(thinId?: number, options?: ThinChangeOptions): Promise<number> {
    const given = thinId === undefined ? undefined : checkThinId(thinId);
    const commit = this.#commitSteps(options);
    return serialised(this.name, () =>
      this.#allocate(given, async (candidate) => {
        const create = batch.message(this.name, msg.createThin(this.name, candidate), msg.deleteThin(this.name, candidate));
        await batch.runBatch([create, ...commit], this.name);
      }),
    );
  }

  /**
   * Snapshot thin device `originThinId` as `thinId` (or the next free id).
   * Active origins are suspended for the snapshot and resumed whatever happens.
   * With `options.transactionId`, as createThin.
   */
  async createSnapshot(thinId: number | undefined, originThinId: number, options?: ThinChangeOptions): Promise<number> {
    const origin = checkThinId(originThinId, 'originThinId');
    const given = thinId === undefined ? undefined : checkThinId(thinId);
    const commit = this.#commitSteps(options);
    return serialised(this.name, () =>
      this.#allocate(given, async (candidate) => void (await this.#devices.snapshot(candidate, origin, this.name, commit))),
    );
  }

  /**
   * Create thin device `options.thinId` (or the next free id) and activate it as
   * `options.name`: create_thin, create, load and resume in one trip to the
   * kernel (what containerd's CreateThinDevice does in two). If a step fails,
   * what was done is undone.
   */
  async createThinDevice(options: ThinDeviceOptions): Promise<ThinDevice> {
    const { thinId, name, steps } = this.#deviceSteps(options);
    return serialised(this.name, async () => {
      let device: dm.DeviceInfo | undefined;
      const made = await this.#allocate(thinId, async (candidate) => {
        device = await this.#devices.createThin(candidate, name, steps(candidate));
      });
      return { ...device!, thinId: made };
    });
  }

  /**
   * Snapshot thin device `originThinId` as `options.thinId` (or the next free id) and
   * activate the snapshot as `options.name`, in one trip: suspend the active
   * origins, create_snap, resume them, create, load and resume. If a step
   * fails, what was done is undone and no origin stays suspended.
   */
  async createSnapshotDevice(originThinId: number, options: ThinDeviceOptions): Promise<ThinDevice> {
    const origin = checkThinId(originThinId, 'originThinId');
    const { thinId, name, steps } = this.#deviceSteps(options);
    return serialised(this.name, async () => {
      let device: dm.DeviceInfo | undefined;
      const made = await this.#allocate(thinId, async (candidate) => {
        device = await this.#devices.createSnapshot(candidate, origin, name, steps(candidate));
      });
      return { ...device!, thinId: made };
    });
  }

  /** Validate a thin device's options (before any ioctl); the create steps for a given thin id. */
  #deviceSteps(options: ThinDeviceOptions): { thinId: ThinId | undefined; name: DmName; steps: (thinId: ThinId) => batch.Step[] } {
    const o = checkOptions<ThinDeviceOptions>(options, 'options', ['thinId', 'name', 'size', 'readOnly']);
    const thinId = o.thinId === undefined ? undefined : checkThinId(o.thinId, 'options.thinId');
    const { name, readOnly, length } = checkActivate(o);
    const steps = (thinId: ThinId) => batch.createDevice(name, { readOnly, table: this.#devices.thinTable(thinId, length) });
    return { thinId, name, steps }; // steps(thinId) checks the table before the first ioctl
  }

  /**
   * Deactivate thin device `name` and delete `thinId`, the thin id it maps
   * (as createThinDevice() returned them): remove and delete in one trip. If
   * the delete fails, the device is put back as it was.
   */
  async removeThinDevice(name: string, thinId: number): Promise<void> {
    const device = checkName(name);
    const id = checkThinId(thinId);
    return serialised(this.name, () => this.#devices.remove(device, id, (gone) => this.#deleteId(gone)));
  }

  /**
   * Delete thin device `thinId` and free its blocks; it must not be active.
   * With `options.transactionId`, the pool's transaction id moves in the same
   * trip; a delete cannot be undone, so if only the move fails the device
   * stays deleted and the move's error is thrown.
   */
  async deleteThin(thinId: number, options?: ThinChangeOptions): Promise<void> {
    const id = checkThinId(thinId);
    const commit = this.#commitSteps(options);
    return serialised(this.name, () => this.#deleteId(id, commit));
  }

  /** Map thin device `thinId` as a block device of `size` bytes named `name`. */
  async activate(thinId: number, options: ActivateOptions): Promise<dm.DeviceInfo> {
    const id = checkThinId(thinId);
    const { name, readOnly, length } = checkActivate(checkOptions<ActivateOptions>(options, 'options', ['name', 'size', 'readOnly']));
    const device = await dm.create(name, { readOnly, table: this.#devices.thinTable(id, length) });
    this.#devices.noteActive(device.minor, name, id);
    return device;
  }

  /** Remove the thin device `name`; with `deferred`, when its last user closes it. */
  async deactivate(name: string, options?: { deferred?: boolean }): Promise<dm.RemoveResult> {
    const device = checkName(name);
    const o = checkOptions<{ deferred: boolean }>(options, 'options', ['deferred']);
    const r = await dm.remove(device, { deferred: checkBoolean(o.deferred, 'options.deferred') ?? false });
    if (!r.deferred) this.#devices.forget(device);
    return r;
  }

  /**
   * How much of thin device `thinId` the pool has mapped: the thin target's
   * status (mapped sectors, highest mapped sector). For an id that is active
   * the status of its device; for one that is not, of a short read-only
   * activation under a scratch name, removed again before this resolves
   * (the kernel counts mappings per thin id, whatever the table's length).
   */
  async thinUsage(thinId: number): Promise<ThinUsage> {
    return this.#devices.usage(checkThinId(thinId), this.#params.dataBlockSectors);
  }

  /**
   * Thin devices active on this pool right now, with their thin ids: the
   * pool's sysfs holders, their tables read in one threadpool trip together
   * with the pool's own status, which proves the holders were the pool's.
   */
  activeDevices(): Promise<Array<{ name: string; thinId: number }>> {
    return this.#devices.activeDevices();
  }

  /** Change the pool's transaction id from `from` to `to` (EINVAL if it is not `from`). */
  async setTransactionId(from: number, to: number): Promise<void> {
    checkUint(from, 'from');
    checkUint(to, 'to');
    return serialised(this.name, () => this.#message(msg.setTransactionId(from, to)));
  }

  /** Hold a metadata snapshot so thin_dump --metadata-snap can read a consistent copy of a live pool. */
  async reserveMetadataSnap(): Promise<void> {
    return serialised(this.name, () => this.#message(msg.reserveMetadataSnap()));
  }

  /** Release the metadata snapshot reserveMetadataSnap() took. */
  async releaseMetadataSnap(): Promise<void> {
    return serialised(this.name, () => this.#message(msg.releaseMetadataSnap()));
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
    const metadataSize =
      o.metadataSize === undefined ? undefined : checkMetadataSize(parseSize(o.metadataSize, 'metadataSize'), 'metadataSize');
    const lowWaterMark = o.lowWaterMark === undefined ? undefined : checkUint(o.lowWaterMark, 'lowWaterMark');
    return serialised(this.name, async () => {
      const b = this.loopBacking;
      if (!b && (dataSize !== undefined || metadataSize !== undefined)) {
        throw invalidArg('options', `pool '${this.name}' is on block devices: grow them (e.g. lvextend), then call resize() with no sizes`);
      }
      if (b) {
        await growFile(b.dataFile, dataSize, 'dataSize', this.#params.dataDevice);
        await growFile(b.metadataFile, metadataSize, 'metadataSize', this.#params.metadataDevice);
      }
      const dataBytes = b ? (await stat(b.dataFile)).size : await deviceSize(await devicePath(this.#params.dataDevice));
      const sectors = poolSectors(dataBytes, this.#params.dataBlockSectors);
      if (sectors < this.#sectors)
        throw invalidArg('dataSize', `the pool is ${this.#sectors * SECTOR} bytes; shrinking a thin pool is not possible`);
      const params = { ...this.#params, lowWaterMark: lowWaterMark ?? this.#params.lowWaterMark };
      // Load, then suspend and resume: the data length and any metadata growth
      // take effect on resume. noFlush: a full pool cannot flush queued I/O.
      await step(progress, `reloading pool '${this.name}' at ${humanSize(sectors * SECTOR)}`, async () => {
        await dm.load(this.name, [{ start: 0, length: sectors, type: 'thin-pool', params: poolGrammar.format(params) }]);
        await dm.suspend(this.name, { noFlush: true });
        await dm.resume(this.name);
      });
      this.#sectors = sectors;
      this.#params = params;
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
   * on the same dir reopens it. Loop devices the library did not attach (no
   * autoclear: losetup's, say) stay attached. Fails with EBUSY, changing nothing, while a
   * thin device is open.
   */
  async destroy(): Promise<void> {
    return serialised(this.name, async () => {
      const active = await this.activeDevices();
      const open = [];
      for (const d of active) if ((await dm.info(d.name)).openCount > 0) open.push(d.name);
      if (open.length > 0) {
        throw new DmError(`pool '${this.name}' has open thin devices: ${open.join(', ')}; unmount or close them first`, {
          code: 'EBUSY',
          device: this.name,
        });
      }
      for (const d of active) await dm.remove(d.name, { retry: true });
      const loops = [this.#params.dataDevice, this.#params.metadataDevice];
      await dm.remove(this.name, { retry: true });
      if (this.loopBacking) {
        // Our loops are attached with autoclear, which detaches them once the pool lets go, but on
        // the kernel's workqueue: detach them now, so none is seen after destroy returns. A loop
        // without autoclear is someone else's (losetup's, say): never detached here.
        for (const l of loops) {
          const path = await devicePath(l);
          const info = await loop.info(path).catch(() => undefined);
          const ours =
            info?.autoclear && (info.backingFile === this.loopBacking.dataFile || info.backingFile === this.loopBacking.metadataFile);
          if (ours) await loop.detach(path).catch(() => undefined); // gone by itself meanwhile
        }
      }
    });
  }

  // ---- private ------------------------------------------------------------

  /** A thin-pool message, with its errno advice (control.ts adds it, as for every ioctl). */
  async #message(m: PoolMessage): Promise<void> {
    await batch.runBatch([batch.message(this.name, m)], this.name);
  }

  /** The set_transaction_id step that options.transactionId asks for (validated before any ioctl), or none. */
  #commitSteps(options: unknown): batch.Step[] {
    const t = checkThinChange(options);
    return t ? [batch.message(this.name, msg.setTransactionId(t.from, t.to))] : [];
  }

  /** Try `create(thinId)` with `thinId`, or with successive free ids when none is given. */
  async #allocate(thinId: ThinId | undefined, create: (thinId: ThinId) => Promise<void>): Promise<number> {
    if (thinId !== undefined) {
      await create(thinId);
      return thinId;
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

  /**
   * The delete message. The kernel refuses (EBUSY) an id that is open; only
   * then look for the device that maps it (a trip the common case skips).
   * With none, the kernel still holds the id a moment after a deferred
   * removal dropped its name: retry that, bounded (about 5 s).
   */
  async #deleteId(thinId: ThinId, commit: batch.Step[] = []): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await batch.runBatch([batch.message(this.name, msg.deleteThin(this.name, thinId)), ...commit], this.name);
        return;
      } catch (e) {
        if (!(e instanceof DmError) || e.code !== 'EBUSY') throw e;
        const active = (await this.activeDevices()).filter((d) => d.thinId === thinId).map((d) => d.name);
        if (active.length > 0) {
          throw new DmError(`thin id ${thinId} is active as ${active.map((n) => `'${n}'`).join(', ')}; deactivate it first`, {
            code: 'EBUSY',
            device: this.name,
          });
        }
        if (attempt >= DELETE_RETRY.attempts) throw e;
        await sleep(Math.min(DELETE_RETRY.delayMs, 10 * 2 ** attempt));
      }
    }
  }
}
