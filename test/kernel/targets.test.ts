// Every grammar against what the kernel itself prints for tables and statuses.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dm, loop, targets as T } from '../../lib/index';
import { RUN, scratchPool, sparseFile, sweep, thin, writeBlock } from './helpers';

const MiB = 1 << 20;
let a: loop.LoopDevice;
let b: loop.LoopDevice;
const majmin = (l: loop.LoopDevice) => `${l.major}:${l.minor}`;

beforeAll(async () => {
  await sweep();
  a = await loop.attach(await sparseFile('tg-a', 64 * MiB));
  b = await loop.attach(await sparseFile('tg-b', 64 * MiB));
});
afterAll(sweep);

async function make(tag: string, grammar: T.TargetGrammar<unknown, unknown>, length: number, params: unknown) {
  const name = `${RUN}${tag}`;
  await dm.create(name, { table: [T.target(grammar, 0, length, params)] });
  const [table] = await dm.table(name);
  const [status] = await dm.status(name);
  return { name, table: grammar.parse(table!.params), status: grammar.parseStatus(status!.params), rawTable: table!.params };
}

describe('grammars on real kernel output', () => {
  it('thin-pool and thin', async () => {
    const pool = await scratchPool('tg');
    const [t] = await dm.table(pool.name);
    expect(T.thinPool.parse(t!.params)).toEqual({
      metadataDevice: majmin(pool.metaLoop), dataDevice: majmin(pool.dataLoop), dataBlockSectors: 256, lowWaterMark: 32768, features: ['skip_block_zeroing'],
    });
    const dev = await thin(pool, 3);
    expect(T.thin.parseStatus((await dm.status(dev.name))[0]!.params)).toEqual({ state: 'ok', mappedSectors: 0, highestMappedSector: null });
    await writeBlock(dev.path, 0, randomBytes(256 * 1024));
    expect(T.thin.parseStatus((await dm.status(dev.name))[0]!.params)).toEqual({ state: 'ok', mappedSectors: 512, highestMappedSector: 511 });
    const [tt] = await dm.table(dev.name);
    expect(T.thin.parse(tt!.params)).toMatchObject({ deviceId: 3 });
    const s = T.thinPool.parseStatus((await dm.status(pool.name))[0]!.params);
    expect(s).toMatchObject({ state: 'ok', usedDataBlocks: 2, totalDataBlocks: pool.dataSectors / 256, mode: 'rw' });
  });

  it('linear, zero, error', async () => {
    expect((await make('lin', T.linear as never, 2048, { device: a.path, offset: 8 })).table).toEqual({ device: majmin(a), offset: 8 });
    expect((await make('zero', T.zero as never, 8, {})).status).toEqual({});
    expect((await make('err', T.error as never, 8, {})).table).toEqual({});
  });

  it('snapshot-origin and snapshot, with the allocation it reports', async () => {
    const origin = await make('origin', T.snapshotOrigin as never, 64 * 2048, { origin: a.path });
    expect(origin.table).toEqual({ origin: majmin(a) });
    const snap = await make('snap', T.snapshot as never, 64 * 2048, { origin: a.path, cow: b.path, persistence: 'P', chunkSectors: 16, features: [] });
    expect(snap.table).toEqual({ origin: majmin(a), cow: majmin(b), persistence: 'P', chunkSectors: 16, features: [] });
    expect(snap.status).toMatchObject({ state: 'ok', allocatedSectors: expect.any(Number), totalSectors: 64 * 2048 });
    await writeBlock(`/dev/mapper/${snap.name}`, 0, randomBytes(64 * 1024));
    const after = T.snapshot.parseStatus((await dm.status(snap.name))[0]!.params);
    expect(after.state === 'ok' && after.allocatedSectors).toBeGreaterThan((snap.status as { allocatedSectors: number }).allocatedSectors);
    await dm.remove(snap.name);
    await dm.remove(origin.name);
  });

  it('flakey, with the zero feature count the kernel prints and with features', async () => {
    const plain = await make('flakey', T.flakey as never, 2048, { device: a.path, offset: 0, upInterval: 5, downInterval: 0, features: [] });
    expect(plain.rawTable.trim()).toMatch(/ 0$/); // "0 features" spelled out
    expect(plain.table).toEqual({ device: majmin(a), offset: 0, upInterval: 5, downInterval: 0, features: [] });
    const corrupt = await make('flakey2', T.flakey as never, 2048, { device: a.path, offset: 0, upInterval: 1, downInterval: 1, features: T.flakeyFeatures.corruptBioByte(32, 'r', 1, 0) });
    expect((corrupt.table as T.FlakeyParams).features).toEqual(['corrupt_bio_byte', '32', 'r', '1', '0']);
  });

  it('delay, with its read/write/flush counters', async () => {
    const d = await make('delay', T.delay as never, 2048, { read: { device: a.path, offset: 0, delayMs: 0 }, write: { device: b.path, offset: 0, delayMs: 1 } });
    expect(d.table).toEqual({ read: { device: majmin(a), offset: 0, delayMs: 0 }, write: { device: majmin(b), offset: 0, delayMs: 1 } });
    expect(d.status).toMatchObject({ reads: expect.any(Number), writes: expect.any(Number) });
  });
});
