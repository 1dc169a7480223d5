// Event waits: arm-poll on the libuv loop (no threadpool thread held), the
// blocking DM_DEV_WAIT, and AbortSignal.
import { stat } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dm } from '../../lib/index';
import { RUN, sweep } from './helpers';

const zero: dm.Target[] = [{ start: 0, length: 8, type: 'zero', params: '' }];

beforeAll(sweep);
afterAll(sweep);

describe('wait', () => {
  it('resolves with the next event number when the device has an event (rename)', async () => {
    const name = `${RUN}w1`;
    await dm.create(name, { table: zero });
    const { eventNr } = await dm.info(name);
    const waiting = dm.wait(name, eventNr);
    await new Promise((r) => setTimeout(r, 50));
    await dm.rename(name, `${RUN}w1b`); // a rename raises a table event
    expect(await waiting).toBe(eventNr + 1);
    await dm.remove(`${RUN}w1b`);
  });

  it('returns at once when the event already happened', async () => {
    const name = `${RUN}w2`;
    await dm.create(name, { table: zero });
    await dm.rename(name, `${RUN}w2b`);
    expect(await dm.wait(`${RUN}w2b`, 0)).toBe(1);
    expect(await dm.wait(`${RUN}w2b`, 0, { method: 'ioctl' })).toBe(1);
    await dm.remove(`${RUN}w2b`);
  });

  it('does not occupy the libuv threadpool: 8 waits, then file-system work still runs', async () => {
    const name = `${RUN}w3`;
    await dm.create(name, { table: zero });
    const ac = new AbortController();
    const waits = Array.from({ length: 8 }, () => dm.wait(name, 0, { signal: ac.signal }).catch((e: unknown) => e));
    await new Promise((r) => setTimeout(r, 100));
    // fs.stat runs on the threadpool (4 threads): it would hang behind 8 blocked waits.
    const done = await Promise.race([stat('/').then(() => true), new Promise((r) => setTimeout(() => r(false), 20_000))]);
    expect(done).toBe(true);
    ac.abort();
    for (const r of await Promise.all(waits)) expect(r).toMatchObject({ code: 'ERR_DM_ABORTED' });
    await dm.remove(name);
  });

  it('DM_DEV_WAIT blocks until the event', async () => {
    const name = `${RUN}w4`;
    await dm.create(name, { table: zero });
    const waiting = dm.wait(name, 0, { method: 'ioctl' });
    await new Promise((r) => setTimeout(r, 50));
    await dm.rename(name, `${RUN}w4b`);
    expect(await waiting).toBe(1);
    await dm.remove(`${RUN}w4b`);
  });

  it('aborts, and rejects a signal that already fired', async () => {
    const name = `${RUN}w5`;
    await dm.create(name, { table: zero });
    const ac = new AbortController();
    const waiting = dm.wait(name, 0, { signal: ac.signal });
    setTimeout(() => ac.abort(new Error('enough')), 50);
    await expect(waiting).rejects.toMatchObject({ code: 'ERR_DM_ABORTED', cause: new Error('enough') });
    await expect(dm.wait(name, 0, { signal: AbortSignal.abort() })).rejects.toMatchObject({ code: 'ERR_DM_ABORTED' });
    await dm.remove(name);
  });

  it('an abort that lands while the arm-poll or status ioctl is in flight still ends the wait', async () => {
    const name = `${RUN}w5b`;
    await dm.create(name, { table: zero });
    // Abort after 0..4 turns of the event loop: some land mid-ioctl, before the poll starts.
    const turns = [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4];
    for (const n of turns) {
      const ac = new AbortController();
      const waiting = dm.wait(name, 0, { signal: ac.signal }).catch((e: unknown) => e);
      for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
      ac.abort();
      const outcome = await Promise.race([waiting, new Promise((r) => setTimeout(() => r('hung'), 30_000))]);
      expect(outcome).toMatchObject({ code: 'ERR_DM_ABORTED' });
    }
    await dm.remove(name);
  });

  it('rejects with ENXIO when the device is removed while waiting', async () => {
    const name = `${RUN}w6`;
    await dm.create(name, { table: zero });
    const waiting = dm.wait(name, 0).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 50));
    await dm.remove(name);
    expect(await waiting).toMatchObject({ code: 'ENXIO' });
  });
});
