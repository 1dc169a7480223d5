// A set's devices and their records: names, the thin device behind each
// record (made and deleted in pool transactions), activation, growth and the
// base device. DeviceSet (device-set.ts) is the public face over this.
import { join } from 'node:path';
import * as dm from '../dm';
import { DmError, invalidArg } from '../errors';
import { filesystemUuid, makeFilesystem } from '../filesystem';
import { humanSize } from '../format';
import type { DeviceRecord, RecordStore, SetRecord, TransactionRecord } from '../metadata-store';
import { ensureBlockNode } from '../nodes';
import { MAX_THIN_ID, type PoolStatus, type ThinPool } from '../pool/index';
import { step } from '../progress';
import { READ_WRITE, type SetAccess } from './docker-store';
import { growDevice } from './leftovers';
import type { Settings } from './options';
import { freeThinId, PoolTransactions } from './transactions';

/** The base device's record id. */
export const BASE = '';

export class SetDevices {
  readonly txns: PoolTransactions;

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

  /** After a rolled-back transaction: the record of its thin id goes (marked deleted, if the id is still busy). */
  async forgetRecord(t: TransactionRecord, busy: boolean): Promise<void> {
    const r = this.store.get(t.id);
    if (!r || r.deviceId !== t.deviceId) return;
    if (busy) await this.store.put({ ...r, deleted: true });
    else await this.store.delete(t.id);
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
      ...(status ? { status } : {}),
    });
    advance(thinId);
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

  /** Device `rec` active (made so if it was not), its node in place. */
  async activateDevice(rec: DeviceRecord, known?: { live: dm.DeviceInfo | undefined }): Promise<dm.DeviceInfo> {
    const name = this.dmName(rec.id);
    // `known`: the caller has just looked (one trip fewer).
    const live = known ? known.live : await dm.info(name).catch(() => undefined);
    if (live?.activeTable) {
      if (live.deferredRemove) await dm.cancelDeferredRemove(name);
      await ensureBlockNode(live.path, live); // a killed process may have made the device but not its node
      return live;
    }
    if (live) await dm.remove(name); // created, never loaded: the process died in between
    return this.pool.activate(rec.deviceId, { name, size: rec.size, readOnly: this.access.readOnly });
  }

  /** Device `id` gone from device-mapper (deferred with deferredRemoval); its record and thin id stay. */
  async deactivateDevice(id: string): Promise<void> {
    const name = this.dmName(id);
    if (this.access.leaveActive.has(name)) return;
    // Not active (ENXIO) is fine: no look first, one trip fewer.
    await dm.remove(name, this.settings.deferredRemoval ? { deferred: true } : { retry: true }).catch((e: unknown) => {
      if (!(e instanceof DmError) || e.code !== 'ENXIO') throw e;
    });
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
      const dev = await this.activateDevice(rec);
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
    const dev = await this.activateDevice(base);
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
