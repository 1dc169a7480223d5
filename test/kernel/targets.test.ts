// Every grammar against what the kernel itself prints: each device is made
// from a table line the grammar formatted, and its table (devices as MAJ:MIN,
// features in the kernel's order) and status are read back through it.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dm, loop, targets as T } from '../../lib/index';
import { readBlock, RUN, sectors, sparseFile, sweep, writeBlock } from './helpers';

const MiB = 1 << 20;
let a: loop.LoopDevice;
let b: loop.LoopDevice;
let c: loop.LoopDevice;
let d: loop.LoopDevice;
const majmin = (d: { major: number; minor: number }) => `${d.major}:${d.minor}`;

beforeAll(async () => {
  await sweep();
  a = await loop.attach(await sparseFile('tg-a', 64 * MiB));
  b = await loop.attach(await sparseFile('tg-b', 64 * MiB));
  c = await loop.attach(await sparseFile('tg-c', 32 * MiB));
  d = await loop.attach(await sparseFile('tg-d', 32 * MiB));
});
afterAll(sweep);

async function statusOf<S>(grammar: T.TargetGrammar<unknown, S>, name: string): Promise<S> {
  const [line] = await dm.status(name);
  expect(line!.type).toBe(grammar.type);
  return grammar.parseStatus(line!.params);
}

/**
 * Create a one-target device from typed params (the line optionally edited
 * first); read its table and status back through the grammar.
 */
async function make<P, S>(tag: string, grammar: T.TargetGrammar<P, S>, length: number, params: P, edit = (line: string) => line) {
  const name = `${RUN}${tag}`;
  const line = T.target(grammar, 0, length, params);
  const info = await dm.create(name, { table: [{ ...line, params: edit(line.params) }] });
  const [table] = await dm.table(name);
  expect(table).toMatchObject({ start: 0, length, type: grammar.type });
  return { name, info, rawTable: table!.params, table: grammar.parse(table!.params), status: await statusOf(grammar, name) };
}

/** Poll `check` until it holds or `ms` pass; the last value either way. */
async function until<V>(ms: number, get: () => Promise<V>, check: (v: V) => boolean): Promise<V> {
  const end = Date.now() + ms;
  let v = await get();
  while (!check(v) && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 20));
    v = await get();
  }
  return v;
}

describe('grammars on real kernel output', () => {
  it('thin-pool and thin: devices as MAJ:MIN, features in the kernel order, ignore_discard in the status', async () => {
    const dataBytes = 256 * MiB;
    const data = await loop.attach(await sparseFile('tg-pool-data', dataBytes));
    const meta = await loop.attach(await sparseFile('tg-pool-meta', 16 * MiB));
    const pool = await make('tg-pool', T.thinPool, sectors(dataBytes), {
      metadataDevice: meta.path,
      dataDevice: data.path,
      dataBlockSectors: 256,
      lowWaterMark: 16,
      features: ['error_if_no_space', 'ignore_discard', 'skip_block_zeroing'],
    });
    expect(pool.table).toEqual({
      metadataDevice: majmin(meta),
      dataDevice: majmin(data),
      dataBlockSectors: 256,
      lowWaterMark: 16,
      features: ['skip_block_zeroing', 'ignore_discard', 'error_if_no_space'], // the kernel's order, not ours
    });
    expect(pool.status).toEqual({
      state: 'ok',
      transactionId: 0,
      usedMetadataBlocks: expect.any(Number),
      totalMetadataBlocks: (16 * MiB) / 4096,
      usedDataBlocks: 0,
      totalDataBlocks: sectors(dataBytes) / 256,
      heldMetadataRoot: null,
      mode: 'rw',
      discardPassdown: false,
      ignoreDiscard: true,
      errorIfNoSpace: true,
      needsCheck: false,
      metadataLowWatermark: expect.any(Number),
    });

    await dm.message(pool.name, 'create_thin 3');
    const dev = await make('tg-thin3', T.thin, sectors(64 * MiB), { poolDevice: pool.info.path, thinId: 3 });
    expect(dev.table).toEqual({ poolDevice: majmin(pool.info), thinId: 3 });
    expect(dev.status).toEqual({ state: 'ok', mappedSectors: 0, highestMappedSector: null });
    await writeBlock(dev.info.path, 0, randomBytes(256 * 1024));
    expect(await statusOf(T.thin, dev.name)).toEqual({ state: 'ok', mappedSectors: 512, highestMappedSector: 511 });
    expect(await statusOf(T.thinPool, pool.name)).toMatchObject({
      state: 'ok',
      usedDataBlocks: 2,
      totalDataBlocks: sectors(dataBytes) / 256,
      mode: 'rw',
    });

    await dm.message(pool.name, 'create_thin 4');
    const ext = await make('tg-thin4', T.thin, sectors(64 * MiB), { poolDevice: pool.info.path, thinId: 4, externalOrigin: a.path });
    expect(ext.table).toEqual({ poolDevice: majmin(pool.info), thinId: 4, externalOrigin: majmin(a) });

    await dm.message(pool.name, 'reserve_metadata_snap');
    const held = await statusOf(T.thinPool, pool.name);
    expect(held.state === 'ok' && held.heldMetadataRoot).toBeGreaterThan(0);
    await dm.message(pool.name, 'release_metadata_snap');
  });

  it('linear, zero, error: tables back, empty statuses', async () => {
    const lin = await make('tg-lin', T.linear, 2048, { device: a.path, offset: 8 });
    expect(lin.table).toEqual({ device: majmin(a), offset: 8 });
    expect(lin.status).toEqual({});
    expect(T.parseTable((await dm.table(lin.name))[0]!)).toEqual({
      start: 0,
      length: 2048,
      type: 'linear',
      params: { device: majmin(a), offset: 8 },
    });
    const z = await make('tg-zero', T.zero, 8, {});
    expect([z.table, z.status]).toEqual([{}, {}]);
    const e = await make('tg-err', T.error, 8, {});
    expect([e.table, e.status]).toEqual([{}, {}]);
  });

  it('snapshot-origin and snapshot: persistence as the kernel spells it, features in its order, allocation in sectors', async () => {
    const origin = await make('tg-origin', T.snapshotOrigin, sectors(64 * MiB), { origin: a.path });
    expect([origin.table, origin.status]).toEqual([{ origin: majmin(a) }, {}]);

    // The kernel reads the persistence word case-blind; the grammar formats it upper case, so lower it here.
    const snap = await make(
      'tg-snap',
      T.snapshot,
      sectors(64 * MiB),
      {
        origin: a.path,
        cow: b.path,
        persistence: 'PO',
        chunkSectors: 16,
        features: ['discard_passdown_origin', 'discard_zeroes_cow'],
      },
      (line) => line.replace(' PO ', ' po '),
    );
    expect(snap.table).toEqual({
      origin: majmin(a),
      cow: majmin(b),
      persistence: 'PO',
      chunkSectors: 16,
      features: ['discard_zeroes_cow', 'discard_passdown_origin'],
    });
    // A persistent store starts with its header and first metadata chunk allocated.
    expect(snap.status).toEqual({ state: 'ok', allocatedSectors: 32, totalSectors: sectors(64 * MiB), metadataSectors: 32 });
    await writeBlock(snap.info.path, 0, randomBytes(64 * 1024));
    expect(await statusOf(T.snapshot, snap.name)).toEqual({
      state: 'ok',
      allocatedSectors: 32 + 128,
      totalSectors: sectors(64 * MiB),
      metadataSectors: 32,
    });

    const transient = await make('tg-snap-n', T.snapshot, sectors(64 * MiB), {
      origin: a.path,
      cow: c.path,
      persistence: 'N',
      chunkSectors: 8,
      features: [],
    });
    expect(transient.table).toEqual({ origin: majmin(a), cow: majmin(c), persistence: 'N', chunkSectors: 8, features: [] });
    expect(transient.status).toEqual({ state: 'ok', allocatedSectors: 0, totalSectors: sectors(32 * MiB), metadataSectors: 0 });
    // A write to the origin copies the chunk into every snapshot first.
    await writeBlock(origin.info.path, 1024 * 1024, randomBytes(4096));
    expect(await statusOf(T.snapshot, transient.name)).toMatchObject({ allocatedSectors: 8 });
  });

  it('flakey: the zero count the kernel spells out, and features in its order', async () => {
    const plain = await make('tg-flakey', T.flakey, 2048, { device: a.path, offset: 0, upInterval: 5, downInterval: 0, features: [] });
    expect(plain.rawTable.trim()).toBe(`${majmin(a)} 0 5 0 0`);
    expect(plain.table).toEqual({ device: majmin(a), offset: 0, upInterval: 5, downInterval: 0, features: [] });
    expect(plain.status).toEqual({});
    const both = await make('tg-flakey2', T.flakey, 2048, {
      device: a.path,
      offset: 16,
      upInterval: 1,
      downInterval: 1,
      features: [...T.flakeyFeatures.corruptBioByte(32, 'r', 1, 0), ...T.flakeyFeatures.dropWrites()],
    });
    expect(both.table).toEqual({
      device: majmin(a),
      offset: 16,
      upInterval: 1,
      downInterval: 1,
      features: ['drop_writes', 'corrupt_bio_byte', '32', 'r', '1', '0'],
    });
    const errs = await make('tg-flakey3', T.flakey, 2048, {
      device: a.path,
      offset: 0,
      upInterval: 0,
      downInterval: 1,
      features: T.flakeyFeatures.errorWrites(),
    });
    expect(errs.table.features).toEqual(['error_writes']);
  });

  it('delay: every class in the table; the counts are bios held back right now', async () => {
    const three = await make('tg-delay3', T.delay, 2048, {
      read: { device: a.path, offset: 0, delayMs: 0 },
      write: { device: b.path, offset: 8, delayMs: 1 },
      flush: { device: c.path, offset: 16, delayMs: 2 },
    });
    expect(three.table).toEqual({
      read: { device: majmin(a), offset: 0, delayMs: 0 },
      write: { device: majmin(b), offset: 8, delayMs: 1 },
      flush: { device: majmin(c), offset: 16, delayMs: 2 },
    });
    expect(three.status).toEqual({ reads: 0, writes: 0, flushes: 0 });
    const one = await make('tg-delay1', T.delay, 2048, { read: { device: a.path, offset: 0, delayMs: 0 } });
    expect(one.table).toEqual({ read: { device: majmin(a), offset: 0, delayMs: 0 } });

    const slow = await make('tg-delay', T.delay, 2048, {
      read: { device: a.path, offset: 0, delayMs: 2500 },
      write: { device: d.path, offset: 0, delayMs: 2500 },
    });
    expect(slow.status).toEqual({ reads: 0, writes: 0, flushes: 0 });
    const get = () => statusOf(T.delay, slow.name);
    const writing = writeBlock(slow.info.path, 0, randomBytes(4096));
    expect((await until(30_000, get, (s) => s.writes > 0)).writes).toBeGreaterThan(0);
    await writing;
    const reading = readBlock(slow.info.path, 512 * 1024, 4096);
    expect((await until(30_000, get, (s) => s.reads > 0)).reads).toBeGreaterThan(0);
    await reading;
    expect(await until(30_000, get, (s) => s.reads + s.writes + (s.flushes ?? 0) === 0)).toEqual({ reads: 0, writes: 0, flushes: 0 });
  });
});
