// The thin devices on one pool: which are active (the pool's sysfs holders
// and their tables, read in one trip), the guess of them that one-trip
// snapshots check, and the one-trip operations themselves: make a thin id
// and activate it, snapshot and activate, remove and delete, each in one
// threadpool trip and undone if a step fails (batch.ts). ThinPool (pool.ts)
// validates and serialises; this file does the trips.
import type { DevNumber, DmIoctlReply } from '../binding';
import * as batch from '../batch';
import * as dm from '../dm';
import { DmError } from '../errors';
import { mapperPath, nodeDev, removeNode } from '../nodes';
import { dmHolderMinors } from '../sysfs';
import { thin as thinGrammar } from '../targets/thin';
import * as msg from '../targets/thin-pool-messages';
import type { DmName, Sectors, ThinId } from '../validate';
import { devicesSeen, serialised, type SeenDevice } from './registry';
import { toThinUsage, type ThinUsage } from './status';

/** An active thin device: its device-mapper info and the thin id it maps. */
export interface ThinDevice extends dm.DeviceInfo {
  thinId: number;
}

/** Read the table of the device with number `major`:`minor` (the pool's major: device-mapper's). */
const tableStep = (pool: DevNumber, minor: number) => batch.readTable({ dev: { major: pool.major, minor } });

export class PoolDevices {
  /** The pool device's number as last seen; activeDevices() checks it against the kernel. */
  private dev: DevNumber | undefined;

  constructor(
    /** The pool's device-mapper name. */
    private readonly name: DmName,
    /** The pool's node, as thin tables name it. */
    private readonly path: string,
  ) {}

  /** The devices on the pool as last seen, by minor, with the thin id each maps: a guess that snapshots check. */
  private get seen(): Map<number, SeenDevice> {
    return devicesSeen(this.name);
  }

  /** The thin table of thin id `thinId` on this pool, `length` sectors long. */
  thinTable(thinId: ThinId, length: Sectors): dm.Target[] {
    return [{ start: 0, length, type: 'thin', params: thinGrammar.format({ poolDevice: this.path, thinId }) }];
  }

  /** Note a device just activated on thin id `id`. */
  noteActive(minor: number, name: DmName, thinId: ThinId): void {
    this.seen.set(minor, { name, thinId });
  }

  /** Drop a removed device from the devices last seen (its minor will be reused). */
  forget(name: string): void {
    for (const [minor, d] of this.seen) if (d.name === name) this.seen.delete(minor);
  }

  /** create_thin `thinId` and the `create` steps that activate it as `name`, in one trip. */
  async createThin(thinId: ThinId, name: DmName, create: batch.Step[]): Promise<dm.DeviceInfo> {
    const replies = await batch.runBatch(
      [batch.message(this.name, msg.createThin(this.name, thinId), msg.deleteThin(this.name, thinId)), ...create],
      name,
    );
    return this.finish(thinId, name, replies.slice(1));
  }

  /** Snapshot `originThinId` as `thinId` and the `create` steps that activate it as `name`, in one trip. */
  async createSnapshot(thinId: ThinId, originThinId: ThinId, name: DmName, create: batch.Step[]): Promise<dm.DeviceInfo> {
    return this.finish(thinId, name, await this.snapshot(thinId, originThinId, name, create));
  }

  /**
   * Snapshot `originThinId` as `thinId`, then the `create` steps (which activate it;
   * may be none), in one trip. Active origins must be suspended for the
   * snapshot. Which devices those are is guessed from the pool's devices as
   * last seen, when its sysfs holders are all known, and checked in the same
   * trip: their tables are read first. A wrong guess (a device changed
   * meanwhile) undoes the snapshot and makes it again after a fresh look.
   * Resolves with the replies of the `create` steps.
   */
  async snapshot(thinId: ThinId, originThinId: ThinId, name: DmName, create: batch.Step[]): Promise<DmIoctlReply[]> {
    for (let guess = this.guessDevices(); ; guess = undefined) {
      const checks = guess ? [...guess.devices.keys()].map((minor) => tableStep(guess.pool, minor)) : [];
      const origins = guess
        ? [...guess.devices.values()].filter((d) => d.thinId === originThinId).map((d) => d.name)
        : await this.activeNames(originThinId);
      const snap = this.snapshotSteps(thinId, originThinId, origins);
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
        const actual = seen.filter((d) => d.thinId === originThinId).map((d) => d.name);
        const pool = o.replies[checks.length + origins.length]!.dev; // the message's reply: the pool it went to
        if (
          pool.major !== guess.pool.major ||
          pool.minor !== guess.pool.minor ||
          actual.length !== origins.length ||
          actual.some((x) => !origins.includes(x))
        ) {
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
  private guessDevices(): { pool: DevNumber; devices: Map<number, SeenDevice> } | undefined {
    const pool = (this.dev ??= nodeDev(this.path));
    if (!pool) return undefined;
    const devices = new Map<number, SeenDevice>();
    for (const minor of dmHolderMinors(`dm-${pool.minor}`)) {
      const known = this.seen.get(minor);
      if (!known) return undefined;
      devices.set(minor, known);
    }
    return { pool, devices };
  }

  /** Note the thin ids of devices on the pool from their DM_TABLE_STATUS replies (-1: not a thin device of this pool). */
  private remember(tables: DmIoctlReply[], pool: DevNumber): SeenDevice[] {
    return tables.map((reply) => {
      // The kernel names the pool by number; a minor reused meanwhile may be a thin device of another pool.
      const thin = reply.targets?.filter((x) => x.type === 'thin').map((x) => thinGrammar.parse(x.params));
      const t = thin?.find((x) => x.poolDevice === `${pool.major}:${pool.minor}`);
      const d = { name: reply.name as DmName, thinId: t ? t.thinId : -1 }; // a name the kernel gave: valid
      this.seen.set(reply.dev.minor, d);
      return d;
    });
  }

  /** Names of the active devices that map thin id `id`. */
  async activeNames(thinId: ThinId): Promise<DmName[]> {
    return (await this.activeDevices()).filter((d) => d.thinId === thinId).map((d) => d.name);
  }

  /** Suspend the active origins, snapshot, resume them: steps for one trip, each undone if a later one fails. */
  private snapshotSteps(thinId: ThinId, originThinId: ThinId, origins: DmName[]): batch.Step[] {
    return [
      ...origins.map((name) => batch.suspend(name)),
      batch.message(this.name, msg.createSnap(this.name, thinId, originThinId), msg.deleteThin(this.name, thinId)),
      ...[...origins].reverse().map((name) => batch.resume(name)),
    ];
  }

  /** After the create steps for thin id `thinId` succeeded: its node (batch.finishCreate), or on failure the id deleted too. */
  private async finish(thinId: ThinId, name: DmName, replies: DmIoctlReply[]): Promise<dm.DeviceInfo> {
    try {
      const device = await batch.finishCreate(name, replies);
      this.seen.set(device.minor, { name, thinId });
      return device;
    } catch (e) {
      await dm.message(this.name, msg.deleteThin(this.name, thinId).text).catch(() => undefined);
      throw e;
    }
  }

  /**
   * Remove device `name` and delete `thinId` in one trip. If the delete
   * fails with EBUSY, `deleteId` (the careful way) is tried; if the id still
   * stays, the device is put back as it was.
   */
  async remove(name: DmName, thinId: ThinId, deleteId: (thinId: ThinId) => Promise<void>): Promise<void> {
    const table = batch.readTable({ name });
    const remove = batch.remove(name, { restore: table, hints: { EBUSY: `'${name}' is in use (mounted or open); close it first` } });
    const o = await batch.runSteps([table, remove, batch.message(this.name, msg.deleteThin(this.name, thinId))], name);
    if (!o.ok) {
      // The device gone, its id not: another device maps the id or a
      // removal still holds it (EBUSY: the careful way finds which, or
      // waits it out), or there is no such id. Else the device goes back.
      let error = o.failed.error;
      const deleted =
        o.failed.index === 2 &&
        error.code === 'EBUSY' &&
        (await deleteId(thinId).then(
          () => true,
          (e: DmError) => ((error = e), false),
        ));
      if (!deleted) {
        await o.undo();
        throw error;
      }
    }
    await removeNode(mapperPath(name));
    this.forget(name);
  }

  /**
   * Thin devices active on this pool right now, with their thin ids: the
   * pool's sysfs holders, their tables read in one threadpool trip together
   * with the pool's own status, which proves the holders were the pool's. A
   * holder removed between the sysfs read and the trip is not active: the
   * rest are read in a further trip.
   */
  async activeDevices(): Promise<SeenDevice[]> {
    let dev = (this.dev ??= nodeDev(this.path) ?? (await dm.info(this.name)));
    let holders = dmHolderMinors(`dm-${dev.minor}`);
    const tables: DmIoctlReply[] = [];
    for (let stale = 0; ;) {
      const o = await batch.runSteps([batch.readInfo(this.name), ...holders.map((minor) => tableStep(dev, minor))], this.name);
      if (!o.ok && o.failed.index === 0) throw o.failed.error;
      const replies = o.replies;
      const pool = replies[0]!.dev;
      if (pool.minor !== dev.minor || pool.major !== dev.major) {
        // Our idea of the pool's number was stale (a node of an old pool): look again.
        if (++stale >= 10)
          throw new DmError(`the devices on pool '${this.name}' kept changing; try again`, { code: 'EAGAIN', device: this.name });
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
    return this.remember(tables, dev).filter((d) => d.thinId >= 0);
  }

  /**
   * How much of thin device `id` the pool has mapped: the thin target's
   * status (mapped sectors, highest mapped sector). For an id that is active
   * the status of its device; for one that is not, of a short read-only
   * activation under a scratch name, removed again before this resolves
   * (the kernel counts mappings per thin id, whatever the table's length).
   */
  async usage(id: number, blockSectors: number): Promise<ThinUsage> {
    const active = (await this.activeDevices()).find((d) => d.thinId === id);
    if (active) {
      const status = await thinStatusOf(active.name).catch((e: unknown) => {
        // Removed meanwhile: look again the other way.
        if (e instanceof DmError && e.code === 'ENXIO') return undefined;
        throw e;
      });
      if (status) return toThinUsage(id, status, 'active');
    }
    return serialised(this.name, async () => {
      const name = `${this.name.slice(0, 100)}-usage-${id}`;
      const length = blockSectors;
      const params = thinGrammar.format({ poolDevice: this.path, thinId: id });
      await dm.create(name, { readOnly: true, table: [{ start: 0, length, type: 'thin', params }] }).catch((e: unknown) => {
        if (e instanceof DmError && (e.code === 'ENODATA' || e.code === 'EINVAL')) {
          throw new DmError(`thin id ${id} does not exist in pool '${this.name}' (or cannot be opened: ${e.code})`, {
            code: 'ERR_DM_NOT_FOUND',
            device: this.name,
            cause: e,
          });
        }
        throw e;
      });
      try {
        return toThinUsage(id, await thinStatusOf(name), 'activation');
      } finally {
        await dm.remove(name, { retry: true });
      }
    });
  }
}

/** The parsed status of thin device `name`; a failed pool or unreadable metadata is an error. */
async function thinStatusOf(name: string): Promise<{ mappedSectors: number; highestMappedSector: number | null }> {
  const [line] = await dm.status(name);
  const s = line?.type === 'thin' ? thinGrammar.parseStatus(line.params) : undefined;
  if (!s) throw new DmError(`'${name}' has no thin status`, { code: 'ERR_DM_DECODE', device: name });
  if (s.state !== 'ok')
    throw new DmError(`'${name}' reports '${s.state}': its pool has failed or its metadata cannot be read`, { code: 'EIO', device: name });
  return s;
}
