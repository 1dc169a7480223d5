// The crash-consistency protocol's decisions, without a kernel: what an open
// transaction found at open needs, and the order of a transaction's steps
// and their undo, against a fake pool. Each case is a state the crash test
// (device-set-crash.test.ts, 200 SIGKILLs) has produced.
import { describe, expect, it } from 'vitest';
import { freeThinId, PoolTransactions, recoveryStep, type TransactionLog } from '../../lib/device-set/transactions';
import { DmError, type DmErrorCode } from '../../lib/errors';
import type { TransactionRecord } from '../../lib/metadata-store';
import type { PoolStatus, ThinPool } from '../../lib/pool/index';

const open = (openTransactionId: number, op: 'create' | 'delete' = 'create'): TransactionRecord => ({
  openTransactionId,
  op,
  id: 'x',
  deviceId: 7,
});

describe('recoveryStep', () => {
  it('killed before the commit point: roll back; after it: only clear; none open: nothing', () => {
    expect(recoveryStep(undefined, 4)).toBe('none');
    expect(recoveryStep(open(5), 4)).toBe('roll-back'); // pool still at T
    expect(recoveryStep(open(5), 5)).toBe('clear'); // pool moved to T+1: the record was written before
  });

  it('a pool that does not belong to the records is not repaired', () => {
    expect(recoveryStep(open(5), 2)).toBe('corrupt');
    expect(recoveryStep(open(5), 9)).toBe('corrupt');
  });
});

describe('freeThinId', () => {
  it('skips used ids from the next one on, wrapping at 2^24', () => {
    expect(freeThinId(new Set([1, 2]), 1)).toBe(3);
    expect(freeThinId(new Set([2 ** 24 - 1]), 2 ** 24 - 1)).toBe(0);
    expect(freeThinId(new Set(), 5)).toBe(5);
  });
});

/** A pool whose messages are recorded and may fail, and a log in memory. */
function fakes(
  o: { txn?: number; fail?: Partial<Record<'createThin' | 'createSnapshot' | 'deleteThin', DmErrorCode>>; mode?: PoolStatus['mode'] } = {},
) {
  const calls: string[] = [];
  let txn = o.txn ?? 0;
  const failing = (what: keyof NonNullable<typeof o.fail>, id: number) => {
    calls.push(`${what} ${id}`);
    const code = o.fail?.[what];
    if (code) throw new DmError(`${what} failed: ${code}`, { code });
  };
  // A change with options.transactionId commits in the same trip (when the change succeeded).
  const commit = (options?: { transactionId?: { from: number; to: number } }) => {
    const t = options?.transactionId;
    if (!t) return;
    calls.push(`  + set_transaction_id ${t.from} ${t.to}`);
    txn = t.to;
  };
  const pool = {
    name: 'pool',
    status: async () => ({ mode: o.mode ?? 'rw', transactionId: txn }) as PoolStatus,
    createThin: async (id: number, options?: { transactionId?: { from: number; to: number } }) => {
      failing('createThin', id);
      commit(options);
    },
    createSnapshot: async (id: number, _origin: number, options?: { transactionId?: { from: number; to: number } }) => {
      failing('createSnapshot', id);
      commit(options);
    },
    deleteThin: async (id: number, options?: { transactionId?: { from: number; to: number } }) => {
      failing('deleteThin', id);
      commit(options);
    },
    setTransactionId: async (from: number, to: number) => {
      calls.push(`set_transaction_id ${from} ${to}`);
      txn = to;
    },
  } as unknown as ThinPool;
  let stored: TransactionRecord | undefined;
  const log: TransactionLog = {
    readTransaction: async () => stored,
    writeTransaction: async (t) => {
      calls.push(`open ${t.op} ${t.id} ${t.deviceId} -> ${t.openTransactionId}`);
      stored = t;
    },
    clearTransaction: async () => {
      calls.push('clear');
      stored = undefined;
    },
  };
  return { calls, pool, log, txns: new PoolTransactions(pool, log), setStored: (t: TransactionRecord) => (stored = t) };
}

describe('PoolTransactions', () => {
  it('a create: open, write the record, change the pool and commit in one trip, clear — in that order', async () => {
    const f = fakes({ txn: 3 });
    const id = await f.txns.create({
      key: 'img',
      originThinId: 1,
      allocate: () => 9,
      skipped: () => undefined,
      record: async (n, t) => void f.calls.push(`record ${n} @${t}`),
      unrecord: async (n) => void f.calls.push(`unrecord ${n}`),
    });
    expect(id).toBe(9);
    expect(f.calls).toEqual(['open create img 9 -> 4', 'record 9 @4', 'createSnapshot 9', '  + set_transaction_id 3 4', 'clear']);
  });

  it('a thin id the pool already has (a foreign user) is skipped, and the next one used', async () => {
    let next = 5;
    const f = fakes();
    const skipped: number[] = [];
    const pool = f.pool as unknown as { createThin: (id: number) => Promise<void> };
    pool.createThin = async (id) => {
      f.calls.push(`createThin ${id}`);
      if (id === 5) throw new DmError('exists', { code: 'EEXIST' });
    };
    const id = await f.txns.create({
      key: 'base',
      originThinId: null,
      allocate: () => next++,
      skipped: (n) => skipped.push(n),
      record: async () => undefined,
      unrecord: async (n) => void f.calls.push(`unrecord ${n}`),
    });
    expect(id).toBe(6);
    expect(skipped).toEqual([5]);
    expect(f.calls.filter((c) => c.startsWith('open') || c.startsWith('unrecord') || c === 'clear')).toEqual([
      'open create base 5 -> 1',
      'unrecord 5',
      'clear',
      'open create base 6 -> 1',
      'clear',
    ]);
  });

  it('a pool change that fails takes the record back, clears the open transaction and commits nothing', async () => {
    const f = fakes({ fail: { createSnapshot: 'ENODATA' } });
    await expect(
      f.txns.create({
        key: 'c',
        originThinId: 3,
        allocate: () => 4,
        skipped: () => undefined,
        record: async () => void f.calls.push('record'),
        unrecord: async () => void f.calls.push('unrecord'),
      }),
    ).rejects.toMatchObject({ code: 'ENODATA' });
    expect(f.calls).toEqual(['open create c 4 -> 1', 'record', 'createSnapshot 4', 'unrecord', 'clear']);
  });

  it('a delete commits in its own trip, then the record goes', async () => {
    const f = fakes({ txn: 2 });
    expect(await f.txns.delete({ key: 'c', thinId: 4, deferBusy: false, record: async (o) => void f.calls.push(o) })).toBe('deleted');
    expect(f.calls).toEqual(['open delete c 4 -> 3', 'deleteThin 4', '  + set_transaction_id 2 3', 'deleted', 'clear']);
  });

  it('a busy delete becomes deferred only when asked (the record marked before the commit); a gone thin id counts as deleted', async () => {
    const busy = fakes({ fail: { deleteThin: 'EBUSY' } });
    await expect(busy.txns.delete({ key: 'c', thinId: 4, deferBusy: false, record: async () => undefined })).rejects.toMatchObject({
      code: 'EBUSY',
    });
    expect(busy.calls).toEqual(['open delete c 4 -> 1', 'deleteThin 4', 'clear']);
    busy.calls.length = 0;
    expect(await busy.txns.delete({ key: 'c', thinId: 4, deferBusy: true, record: async (o) => void busy.calls.push(o) })).toBe('deferred');
    expect(busy.calls).toEqual(['open delete c 4 -> 1', 'deleteThin 4', 'deferred', 'set_transaction_id 0 1', 'clear']);
    const gone = fakes({ fail: { deleteThin: 'ENODATA' } });
    expect(await gone.txns.delete({ key: 'c', thinId: 4, deferBusy: false, record: async (o) => void gone.calls.push(o) })).toBe('deleted');
    expect(gone.calls).toEqual(['open delete c 4 -> 1', 'deleteThin 4', 'deleted', 'set_transaction_id 0 1', 'clear']);
  });

  it('a delete failing otherwise (it may have gone through with only the commit refused) leaves the transaction for open', async () => {
    const f = fakes({ fail: { deleteThin: 'EINVAL' } });
    await expect(f.txns.delete({ key: 'c', thinId: 4, deferBusy: true, record: async (o) => void f.calls.push(o) })).rejects.toMatchObject({
      code: 'EINVAL',
    });
    expect(f.calls).toEqual(['open delete c 4 -> 1', 'deleteThin 4']);
    expect(await f.log.readTransaction()).toMatchObject({ op: 'delete', openTransactionId: 1 });
  });

  it('a failed pool is refused before anything is written', async () => {
    const f = fakes({ mode: 'fail' });
    await expect(
      f.txns.create({
        key: 'c',
        originThinId: null,
        allocate: () => 1,
        skipped: () => undefined,
        record: async () => undefined,
        unrecord: async () => undefined,
      }),
    ).rejects.toMatchObject({ code: 'EIO' });
    expect(f.calls).toEqual([]);
  });

  it('recovery of a create killed before the commit: device removed, thin id deleted, record dropped, pool moved on, log cleared', async () => {
    const f = fakes({ txn: 4 });
    f.setStored(open(5));
    const seen: string[] = [];
    await f.txns.recover({
      deactivate: async (t) => void seen.push(`deactivate ${t.id}`),
      forget: async (t, fate) => void seen.push(`forget ${t.id} ${fate}`),
    });
    expect(seen).toEqual(['deactivate x', 'forget x gone']);
    expect(f.calls).toEqual(['deleteThin 7', 'set_transaction_id 4 5', 'clear']);
  });

  it('recovery of a delete whose device is still busy: the record is kept, marked deleted (deferred deletion)', async () => {
    const f = fakes({ txn: 4, fail: { deleteThin: 'EBUSY' } });
    f.setStored(open(5, 'delete'));
    const seen: string[] = [];
    await f.txns.recover({ deactivate: async () => undefined, forget: async (t, fate) => void seen.push(`forget ${t.id} ${fate}`) });
    expect(seen).toEqual(['forget x busy']);
  });

  it('recovery of a committed delete drops a record a kill left behind (unless a deferred deletion marked it)', async () => {
    const f = fakes({ txn: 5 });
    f.setStored(open(5, 'delete'));
    const seen: string[] = [];
    await f.txns.recover({ deactivate: async () => undefined, forget: async (t, fate) => void seen.push(`forget ${t.id} ${fate}`) });
    expect(seen).toEqual(['forget x committed']);
    expect(f.calls).toEqual(['clear']);
  });

  it("recovery after a create's commit point only clears; a pool from elsewhere is ERR_DM_CORRUPT", async () => {
    const done = fakes({ txn: 5 });
    done.setStored(open(5));
    await done.txns.recover({ deactivate: async () => undefined, forget: async () => undefined });
    expect(done.calls).toEqual(['clear']);
    const alien = fakes({ txn: 1 });
    alien.setStored(open(5));
    await expect(alien.txns.recover({ deactivate: async () => undefined, forget: async () => undefined })).rejects.toMatchObject({
      code: 'ERR_DM_CORRUPT',
    });
  });
});
