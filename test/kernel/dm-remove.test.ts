import { existsSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dm } from '../../lib/index';
import { gone, inTestVm, RUN, sweep } from './helpers';

const zero: dm.Target[] = [{ start: 0, length: 2048, type: 'zero', params: '' }];

beforeAll(sweep);
afterAll(sweep);

describe('remove', () => {
  it('fails with EBUSY while the device is open, with advice', async () => {
    const name = `${RUN}busy`;
    const dev = await dm.create(name, { table: zero });
    const fh = await open(dev.path, 'r');
    try {
      expect((await dm.info(name)).openCount).toBe(1);
      await expect(dm.remove(name)).rejects.toMatchObject({
        code: 'EBUSY',
        ioctl: 'DM_DEV_REMOVE',
        device: name,
        message: expect.stringContaining('deferred'),
      });
    } finally {
      await fh.close();
    }
    await dm.remove(name);
  });

  it('retries EBUSY until the holder lets go', async () => {
    const name = `${RUN}retry`;
    const dev = await dm.create(name, { table: zero });
    const fh = await open(dev.path, 'r');
    const closing = new Promise((r) => setTimeout(r, 150)).then(() => fh.close());
    const started = Date.now();
    expect(await dm.remove(name, { retry: { attempts: 50, delayMs: 20 } })).toEqual({ deferred: false });
    await closing;
    expect(Date.now() - started).toBeGreaterThanOrEqual(100);
    expect(existsSync(dev.path)).toBe(false);
  });

  it('gives up after the bounded retries', async () => {
    const name = `${RUN}giveup`;
    const dev = await dm.create(name, { table: zero });
    const fh = await open(dev.path, 'r');
    try {
      await expect(dm.remove(name, { retry: { attempts: 3, delayMs: 5 } })).rejects.toMatchObject({ code: 'EBUSY' });
    } finally {
      await fh.close();
    }
    await dm.remove(name);
  });

  it('defers removal of an open device until its last close', async () => {
    const name = `${RUN}deferred`;
    const dev = await dm.create(name, { table: zero });
    const fh = await open(dev.path, 'r');
    expect(await dm.remove(name, { deferred: true })).toEqual({ deferred: true });
    expect((await dm.info(name)).deferredRemove).toBe(true);
    await fh.close();
    expect(await gone(name)).toBe(true);
    expect((await dm.list()).some((d) => d.name === name)).toBe(false);
    expect(existsSync(dev.path)).toBe(false); // the node went with it (list prunes)
  });

  it('waitRemoved resolves when the last user closes the device, and times out while it stays open', async () => {
    const name = `${RUN}waitgone`;
    const dev = await dm.create(name, { table: zero });
    const fh = await open(dev.path, 'r');
    await dm.remove(name, { deferred: true });
    await expect(dm.waitRemoved(name, { timeoutMs: 100 })).rejects.toMatchObject({ code: 'ERR_DM_TIMEOUT', device: name });
    const t0 = Date.now();
    setTimeout(() => void fh.close(), 300);
    await dm.waitRemoved(name, { timeoutMs: 60_000 });
    const ms = Date.now() - t0;
    expect(ms).toBeGreaterThanOrEqual(290); // it waited for the close
    expect(existsSync(dev.path)).toBe(false);
    const aborted = AbortSignal.abort();
    await expect(dm.waitRemoved(name, { signal: aborted })).rejects.toMatchObject({ code: 'ERR_DM_ABORTED' });
    await expect(dm.waitRemoved('a/b')).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARG' });
  });

  it('cancels a pending deferred removal', async () => {
    const name = `${RUN}cancel`;
    const dev = await dm.create(name, { table: zero });
    const fh = await open(dev.path, 'r');
    await dm.remove(name, { deferred: true });
    await dm.cancelDeferredRemove(name);
    expect((await dm.info(name)).deferredRemove).toBe(false);
    await fh.close();
    expect((await dm.info(name)).name).toBe(name); // still here after the last close
    await dm.remove(name);
  });

  it('a deferred remove of an unused device removes it at once', async () => {
    const name = `${RUN}idle`;
    await dm.create(name, { table: zero });
    expect(await dm.remove(name, { deferred: true })).toEqual({ deferred: false });
    await expect(dm.info(name)).rejects.toMatchObject({ code: 'ENXIO' });
  });

  it('removes by uuid, taking the node too', async () => {
    const name = `${RUN}byuuid`;
    const dev = await dm.create(name, { uuid: `${RUN}byuuid-u`, table: zero });
    await dm.remove({ uuid: `${RUN}byuuid-u` });
    expect(existsSync(dev.path)).toBe(false);
  });

  it('removeAll removes every unused device but keeps open ones (test VM only)', async (ctx) => {
    if (!(await inTestVm())) ctx.skip(); // it would touch every device of a real host
    const kept = `${RUN}kept`;
    const gone = `${RUN}gone`;
    const keptDev = await dm.create(kept, { table: zero });
    const goneDev = await dm.create(gone, { table: zero });
    const fh = await open(keptDev.path, 'r');
    try {
      await dm.removeAll();
      const names = (await dm.list()).map((d) => d.name);
      expect(names).toContain(kept);
      expect(names).not.toContain(gone);
      expect(existsSync(goneDev.path)).toBe(false);
    } finally {
      await fh.close();
    }
    await dm.remove(kept);
  });
});
