// A set's devices and their records: names, the thin device behind each
// record (made and deleted in pool transactions), activation, growth and the
// base device. DeviceSet (device-set.ts) is the public face over this.
import { join } from 'node:path';
import * as dm from '../dm';
import { DmError, invalidArg } from '../errors';
import { filesystemUuid, makeFilesystem } from '../filesystem';
import { humanSize } from '../format';
import type { DeviceRecord, RecordStore, SetRecord } from '../metadata-store';
import { MAX_THIN_ID, type PoolStatus, type ThinPool } from '../pool/index';
import { step } from '../progress';
import { ensureActive } from './activation';
import { READ_WRITE, type SetAccess } from './docker-store';
import { growDevice } from './leftovers';
import type { Settings } from './options';
import { freeThinId, PoolTransactions } from './transactions';

/** The base device's record id. */
export const BASE = '';

export class SetDevices {
  readonly txns: PoolTransactions;
  /**
   * Devices known not to be active: made, or deactivated, by this set since
   * it opened (its lock keeps other processes from activating them). Their
   * removal skips the deactivation's trip.
   */
  readonly #inactive = new Set<string>();

  constructor(
    private readonly settings: Settings,
    private readonly pool: ThinPool,
    readonly store: RecordStore,
    /** The set's own record (next thin id, base UUID); changed as devices are made. */
    public set: SetRecord,
    /** Device-mapper names are `<prefix>-<id>`; the base device is `<prefix>-base`. */
    private readonly prefix: string,
    private readonly access: SetAccess = READ_WRITE,
  ) {
    this.txns = new PoolTransactions(pool, store);
  }

  dmName(id: string): string {
    return id === BASE ? `${this.prefix}-base` : `${this.prefix}-${id}`;
  }

  record(id: string): DeviceRecord {
    const r = this.store.get(id);
    if (!r || r.deleted) throw new DmError(`no device '${id}' in the set`, { code: 'ENOENT', device: id });
    return r;
  }

  /** A new thin device and its record for `id` (a snapshot of `parent`, or empty for the base), in one transaction. */
  async newDevice(id: string, parent: DeviceRecord | null, size: number, status?: PoolStatus): Promise<DeviceRecord> {
    let rec: DeviceRecord | undefined;
    const advance = (thinId: number) => (this.set = { ...this.set, nextDeviceId: (thinId + 1) % (MAX_THIN_ID + 1) });
    const thinId = await this.txns.create({
      key: id,
      originThinId: parent ? parent.deviceId : null,
      allocate: () => {
        const free = freeThinId(new Set(this.store.all().map((r) => r.deviceId)), this.set.nextDeviceId);
        if (free === undefined)
          throw new DmError(`pool '${this.pool.name}' has no free thin id`, { code: 'ENOSPC', device: this.pool.name });
        return free;
      },
      skipped: advance, // taken outside our records
      record: async (deviceId, transactionId) => {
        rec = { id, deviceId, size, parent: parent ? parent.id : null, transactionId, ...(id === BASE ? { initialized: false } : {}) };
        await this.store.put(rec);
      },
      unrecord: () => this.store.delete(id),
      ...(status ? { status } : {}),
    });
    advance(thinId);
    this.#inactive.add(id);
    // The next thin id to try is a hint (a used one is skipped): written at close, not per device.
    return rec!;
  }

  /** Delete device `rec`'s thin id and its record, in one transaction (deferred, when busy and deferredDeletion). */
  deleteDevice(rec: DeviceRecord): Promise<'deleted' | 'deferred'> {
    return this.txns.delete({
      key: rec.id,
      thinId: rec.deviceId,
      deferBusy: this.settings.deferredDeletion,
      record: (outcome) => (outcome === 'deleted' ? this.store.delete(rec.id) : this.store.put({ ...rec, deleted: true })),
    });
  }

  /** Deferred deletions whose devices are no longer busy. */
  async retryDeletions(): Promise<void> {
    for (const rec of this.store.all().filter((r) => r.deleted)) {
      const live = await dm.info(this.dmName(rec.id)).catch(() => undefined);
      if (live && live.openCount > 0) continue;
      if (live) await dm.remove(live.name).catch(() => undefined);
      await this.deleteDevice(rec).catch(() => undefined);
    }
  }

  /** True when device `id` is known not to be active (no need to ask the kernel). */
  knownInactive(id: string): boolean {
    return this.#inactive.has(id);
  }

  /** Device `rec` active, its node in place; `made` when this call activated it (see ensureActive). */
  activateDevice(rec: DeviceRecord): Promise<{ device: dm.DeviceInfo; made: boolean }> {
    this.#inactive.delete(rec.id);
    return ensureActive(this.pool, rec.deviceId, { name: this.dmName(rec.id), size: rec.size, readOnly: this.access.readOnly });
  }

  /** Device `id` gone from device-mapper (deferred with deferredRemoval); its record and thin id stay. */
  async deactivateDevice(id: string): Promise<void> {
    const name = this.dmName(id);
    if (this.access.leaveActive.has(name) || this.#inactive.has(id)) return;
    // Not active (ENXIO) is fine: no look first, one trip fewer.
    const r = await dm.remove(name, this.settings.deferredRemoval ? { deferred: true } : { retry: true }).catch((e: unknown) => {
      if (!(e instanceof DmError) || e.code !== 'ENXIO') throw e;
      return { deferred: false };
    });
    if (!r.deferred) this.#inactive.add(id);
  }

  /** Grow device `rec` and its filesystem to `size` (it must not be mounted). */
  async grow(rec: DeviceRecord, size: number): Promise<DeviceRecord> {
    const what = rec.id === BASE ? 'the base device' : `'${rec.id}'`;
    const scratch = join(this.settings.root, 'mnt', `.grow-${rec.id || 'base'}`);
    await growDevice(this.pool, this.dmName(rec.id), rec.deviceId, size, {
      fs: this.settings.fs,
      scratch,
      progress: this.settings.progress,
      what,
    });
    const grown = { ...rec, size };
    await this.store.put(grown);
    return grown;
  }

  async setUpBase(): Promise<void> {
    let base = this.store.get(BASE);
    if (base && !base.initialized) {
      // A crash between creating the base device and making its filesystem: start over.
      await dm.remove(this.dmName(BASE)).catch(() => undefined);
      await this.deleteDevice(base);
      base = undefined;
    }
    if (!base) {
      const rec = await this.newDevice(BASE, null, this.settings.baseSize);
      const { device: dev } = await this.activateDevice(rec);
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
    const { device: dev } = await this.activateDevice(base);
    try {
      const uuid = await filesystemUuid(dev.path);
      if (uuid !== this.set.baseUuid) {
        throw new DmError(
          `the base device's filesystem UUID is '${uuid}', the set recorded '${this.set.baseUuid ?? ''}': the pool's metadata and ${this.store.dir} do not belong together`,
          { code: 'ERR_DM_CORRUPT', device: dev.name },
        );
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
}
