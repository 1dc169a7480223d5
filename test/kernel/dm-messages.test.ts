// Target messages and their reply text, on a real thin pool.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dm } from '../../lib/index';
import { scratchPool, sweep, thin, type ScratchPool } from './helpers';

let pool: ScratchPool;
beforeAll(async () => {
  await sweep();
  pool = await scratchPool('msg');
});
afterAll(sweep);

// thin-pool status: <transaction id> <used meta>/<total meta> <used data>/<total data> <held metadata root> ...
const heldRoot = async () => (await dm.status(pool.name))[0]!.params.split(' ')[3];

describe('messages', () => {
  it('reserve_metadata_snap shows a held root in the status; release clears it', async () => {
    expect(await heldRoot()).toBe('-');
    expect(await dm.message(pool.name, 'reserve_metadata_snap')).toBe('');
    expect(await heldRoot()).toMatch(/^\d+$/);
    await dm.message(pool.name, 'release_metadata_snap');
    expect(await heldRoot()).toBe('-');
  });

  it('create_thin makes a device the pool can map, set_transaction_id shows in status', async () => {
    const dev = await thin(pool, 1);
    expect(await dm.deps(dev.name)).toHaveLength(1);
    await dm.message(pool.name, 'set_transaction_id 0 5');
    expect((await dm.status(pool.name))[0]!.params.split(' ')[0]).toBe('5');
    await expect(dm.message(pool.name, 'create_thin 1')).rejects.toMatchObject({ code: 'EEXIST', ioctl: 'DM_TARGET_MSG' });
    await dm.remove(dev.name);
    await dm.message(pool.name, 'delete 1');
  });

  it('returns the reply text the kernel writes (DM_DATA_OUT)', async () => {
    const dev = await thin(pool, 2);
    // dm-stats messages are answered by the device-mapper core with text.
    const region = await dm.message(dev.name, '@stats_create - /1');
    expect(region).toMatch(/^\d+$/);
    const listing = await dm.message(dev.name, '@stats_list');
    expect(listing).toContain(`${region}: `);
    await dm.message(dev.name, `@stats_delete ${region}`);
    await dm.remove(dev.name);
  });

  it('reports a message the target rejects as EINVAL', async () => {
    await expect(dm.message(pool.name, 'no_such_message 1')).rejects.toMatchObject({ code: 'EINVAL', device: pool.name });
  });
});
