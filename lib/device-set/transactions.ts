// The crash-consistency protocol between a pool and a set of records (as
// moby's deviceset kept it), for any client that names thin devices by keys:
// the device set, and next the snapshotter. Every change to the pool is a
// transaction; the pool's own transaction id is its commit point:
//   1. write the open transaction: op, key, thin id, and pool transaction T+1
//   2. a create writes its record
//   3. change the pool and set its transaction id T -> T+1, in one trip
//   4. a delete removes its record (or marks it deleted, when deferred)
//   5. clear the open transaction
// On open, an open transaction whose T+1 the pool has not reached is undone
// (a create: the thin id and the record go) or finished (a delete). One it
// has reached is complete, but for a delete's record a crash left behind.
import { DmError } from '../errors';
import type { RecordStore, TransactionRecord } from '../metadata-store';
import { MAX_THIN_ID, type PoolStatus, type ThinPool } from '../pool/index';

/**
 * What becomes of the record of an interrupted transaction's thin id, the
 * record being the one with that key and thin id: 'gone' (the thin id is
 * gone): it goes; 'busy' (a delete whose device is still open): it stays,
 * marked deleted; 'committed' (a committed delete): it goes unless marked
 * deleted (a deferred deletion, whose thin id is still there).
 */
export type RecordFate = 'gone' | 'busy' | 'committed';

/** Settle the record of interrupted transaction `t` in `store` as `fate` says. */
export async function settleRecord(
  store: Pick<RecordStore, 'get' | 'put' | 'delete'>,
  t: TransactionRecord,
  fate: RecordFate,
): Promise<void> {
  const r = store.get(t.id);
  if (!r || r.deviceId !== t.deviceId || (fate === 'committed' && r.deleted)) return;
  if (fate === 'busy') await store.put({ ...r, deleted: true });
  else await store.delete(t.id);
}

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

  /** Step 1: the open transaction for `op` of `key` on `thinId`; resolves with the commit, T -> T+1. */
  async #open(op: 'create' | 'delete', key: string, thinId: number, status?: PoolStatus): Promise<{ from: number; to: number }> {
    const current = await this.current(status);
    await this.log.writeTransaction({ openTransactionId: current + 1, op, id: key, deviceId: thinId });
    return { from: current, to: current + 1 };
  }

  /**
   * A new thin device for `key`: a snapshot of `originThinId`, or an empty
   * thin device when that is null. `allocate` proposes thin ids; one the pool
   * already has (EEXIST: a foreign user of the pool) is skipped after telling
   * `skipped`. `record` writes the client's record, before the pool changes,
   * so that the change and the commit are one trip; `unrecord` takes it back
   * when the pool refused the change (the pool undoes a half-done change
   * itself). Resolves with the thin id.
   */
  async create(o: {
    key: string;
    originThinId: number | null;
    allocate: () => number;
    skipped: (thinId: number) => void;
    record: (thinId: number, transactionId: number) => Promise<void>;
    unrecord: (thinId: number) => Promise<void>;
    status?: PoolStatus;
  }): Promise<number> {
    for (let status = o.status; ; status = undefined) {
      const thinId = o.allocate();
      const commit = await this.#open('create', o.key, thinId, status);
      try {
        await o.record(thinId, commit.to);
        if (o.originThinId !== null) await this.pool.createSnapshot(thinId, o.originThinId, { transactionId: commit });
        else await this.pool.createThin(thinId, { transactionId: commit });
      } catch (e) {
        await o.unrecord(thinId);
        await this.log.clearTransaction(); // the pool did not change
        if (!(e instanceof DmError) || e.code !== 'EEXIST') throw e;
        o.skipped(thinId);
        continue;
      }
      await this.log.clearTransaction();
      return thinId;
    }
  }

  /**
   * Delete thin device `thinId` of `key`, committing in the same trip. A thin
   * id already gone counts as deleted; a busy one fails with EBUSY unless
   * `deferBusy`, when the outcome is 'deferred'. `record` writes what became
   * of the client's record: after the commit when the delete went through
   * (open drops a record a crash left behind), before it otherwise. Any
   * other failure leaves the transaction open for open() to finish: the
   * delete may have gone through with only the commit refused.
   */
  async delete(o: {
    key: string;
    thinId: number;
    deferBusy: boolean;
    record: (outcome: 'deleted' | 'deferred') => Promise<void>;
  }): Promise<'deleted' | 'deferred'> {
    const commit = await this.#open('delete', o.key, o.thinId);
    let outcome: 'deleted' | 'deferred' = 'deleted';
    let committed = true; // with the delete, in its trip
    try {
      await this.pool.deleteThin(o.thinId, { transactionId: commit });
    } catch (e) {
      const code = e instanceof DmError ? e.code : undefined;
      if (code === 'EBUSY' && o.deferBusy) outcome = 'deferred';
      else if (code !== 'ENODATA') {
        if (code === 'EBUSY') await this.log.clearTransaction(); // refused before anything changed
        throw e;
      } // ENODATA: already gone
      committed = false;
    }
    await o.record(outcome);
    if (!committed) await this.pool.setTransactionId(commit.from, commit.to);
    await this.log.clearTransaction();
    return outcome;
  }

  /**
   * Bring an interrupted transaction to an end so pool and records agree:
   * undo a create, finish a delete. Either way the thin id goes (a delete of
   * a device still busy becomes a deferred deletion). `deactivate` removes
   * the transaction's device; `forget` settles its record (see RecordFate).
   */
  async recover(o: {
    deactivate: (t: TransactionRecord) => Promise<void>;
    forget: (t: TransactionRecord, fate: RecordFate) => Promise<void>;
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
      await o.forget(t, busy ? 'busy' : 'gone');
      await this.pool.setTransactionId(current, t.openTransactionId);
    }
    // Committed. A create's record was written before the commit point; a
    // delete's record goes after it, so a crash may have left it: drop it,
    // unless marked deleted (a deferred deletion: its thin id is still there).
    else if (t.op === 'delete') await o.forget(t, 'committed');
    await this.log.clearTransaction();
  }
}
