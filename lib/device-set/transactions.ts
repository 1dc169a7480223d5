// The crash-consistency protocol between a pool and a set of records (as
// moby's deviceset kept it), for any client that names thin devices by keys:
// the device set, and next the snapshotter. Every change to the pool is a
// transaction:
//   1. write the open transaction: op, key, thin id, and pool transaction T+1
//   2. change the pool (create_thin / create_snap / delete)
//   3. write or remove the record (the client's part)
//   4. set the pool's transaction id T -> T+1 (the commit point)
//   5. clear the open transaction
// On open, an open transaction whose T+1 the pool has reached is complete;
// one it has not reached is undone (a create) or finished (a delete).
import { DmError } from '../errors';
import type { TransactionRecord } from '../metadata-store';
import { MAX_THIN_ID, type PoolStatus, type ThinPool } from '../pool/index';

/** Where the open transaction is kept (MetadataStore is one). */
export interface TransactionLog {
  readTransaction(): Promise<TransactionRecord | undefined>;
  writeTransaction(t: TransactionRecord): Promise<void>;
  clearTransaction(): Promise<void>;
}

/**
 * What an open transaction found at open needs, given the pool's transaction
 * id: nothing, only clearing (it committed), rolling back (it did not), or
 * nothing can be done (the pool and the records do not belong together).
 */
export function recoveryStep(open: TransactionRecord | undefined, poolTransactionId: number): 'none' | 'clear' | 'roll-back' | 'corrupt' {
  if (!open) return 'none';
  if (poolTransactionId === open.openTransactionId) return 'clear';
  if (poolTransactionId === open.openTransactionId - 1) return 'roll-back';
  return 'corrupt';
}

/** The first thin id from `next` on (wrapping at 2^24) that `used` lacks; undefined when all are used. */
export function freeThinId(used: ReadonlySet<number>, next: number): number | undefined {
  let id = next;
  for (let n = 0; n <= MAX_THIN_ID; n++, id = (id + 1) % (MAX_THIN_ID + 1)) if (!used.has(id)) return id;
  return undefined;
}

export class PoolTransactions {
  constructor(
    private readonly pool: ThinPool,
    private readonly log: TransactionLog,
  ) {}

  /**
   * The pool's transaction id, from `status` when the caller has just read it;
   * a failed pool is refused. Read without a metadata commit: every message
   * (set_transaction_id among them) commits already.
   */
  async current(status?: PoolStatus): Promise<number> {
    const s = status ?? (await this.pool.status({ noFlush: true }));
    if (s.mode === 'fail')
      throw new DmError(`pool '${this.pool.name}' has failed; run thin_check on its metadata`, { code: 'EIO', device: this.pool.name });
    return s.transactionId;
  }

  /** Run one pool change as a transaction (see the file comment); `record` writes the client's record at T+1. */
  async run(
    t: { op: 'create' | 'delete'; key: string; thinId: number; status?: PoolStatus },
    change: () => Promise<void>,
    record: (transactionId: number) => Promise<void>,
  ): Promise<void> {
    const current = await this.current(t.status);
    await this.log.writeTransaction({ openTransactionId: current + 1, op: t.op, id: t.key, deviceId: t.thinId });
    try {
      await change();
    } catch (e) {
      await this.log.clearTransaction(); // the pool did not change
      throw e;
    }
    await record(current + 1);
    await this.pool.setTransactionId(current, current + 1);
    await this.log.clearTransaction();
  }

  /**
   * A new thin device for `key`: a snapshot of `originThinId`, or an empty
   * thin device when that is null. `allocate` proposes thin ids; one the pool
   * already has (EEXIST: a foreign user of the pool) is skipped after telling
   * `skipped`. `record` writes the client's record. Resolves with the thin id.
   */
  async create(o: {
    key: string;
    originThinId: number | null;
    allocate: () => number;
    skipped: (thinId: number) => void;
    record: (thinId: number, transactionId: number) => Promise<void>;
    status?: PoolStatus;
  }): Promise<number> {
    for (let status = o.status; ; status = undefined) {
      const thinId = o.allocate();
      try {
        await this.run(
          { op: 'create', key: o.key, thinId, ...(status ? { status } : {}) },
          async () => {
            if (o.originThinId !== null) await this.pool.createSnapshot(thinId, o.originThinId);
            else await this.pool.createThin(thinId);
          },
          (txn) => o.record(thinId, txn),
        );
        return thinId;
      } catch (e) {
        if (!(e instanceof DmError) || e.code !== 'EEXIST') throw e;
        o.skipped(thinId);
      }
    }
  }

  /**
   * Delete thin device `thinId` of `key`. A thin id already gone counts as
   * deleted; a busy one fails with EBUSY unless `deferBusy`, when the outcome
   * is 'deferred'. `record` writes what became of the client's record.
   */
  async delete(o: {
    key: string;
    thinId: number;
    deferBusy: boolean;
    record: (outcome: 'deleted' | 'deferred') => Promise<void>;
  }): Promise<'deleted' | 'deferred'> {
    let outcome: 'deleted' | 'deferred' = 'deleted';
    await this.run(
      { op: 'delete', key: o.key, thinId: o.thinId },
      async () => {
        try {
          await this.pool.deleteThin(o.thinId);
        } catch (e) {
          if (e instanceof DmError && e.code === 'ENODATA') return; // already gone
          if (!(e instanceof DmError) || e.code !== 'EBUSY' || !o.deferBusy) throw e;
          outcome = 'deferred';
        }
      },
      () => o.record(outcome),
    );
    return outcome;
  }

  /**
   * Bring an interrupted transaction to an end so pool and records agree:
   * undo a create, finish a delete. Either way the thin id goes (a delete of
   * a device still busy becomes a deferred deletion). `deactivate` removes
   * the transaction's device; `forget` drops (or, busy, marks deleted) its record.
   */
  async recover(o: {
    deactivate: (t: TransactionRecord) => Promise<void>;
    forget: (t: TransactionRecord, busy: boolean) => Promise<void>;
  }): Promise<void> {
    const t = await this.log.readTransaction();
    const current = t ? await this.current() : 0;
    const step = recoveryStep(t, current);
    if (step === 'none' || !t) return;
    if (step === 'corrupt') {
      throw new DmError(`pool '${this.pool.name}' is at transaction ${current} but the set's open transaction is ${t.openTransactionId}`, {
        code: 'ERR_DM_CORRUPT',
        device: this.pool.name,
      });
    }
    if (step === 'roll-back') {
      await o.deactivate(t).catch(() => undefined);
      let busy = false;
      await this.pool.deleteThin(t.deviceId).catch((e: unknown) => {
        if (e instanceof DmError && e.code === 'EBUSY' && t.op === 'delete') busy = true;
        else if (!(e instanceof DmError) || e.code !== 'ENODATA') throw e;
      });
      await o.forget(t, busy);
      await this.pool.setTransactionId(current, t.openTransactionId);
    }
    await this.log.clearTransaction(); // committed: the record was written before the commit point
  }
}
