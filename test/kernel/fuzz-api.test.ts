// The whole public API fuzzed against the real kernel: generated sequences of
// calls with hostile names, uuids, sizes, ids, tables, messages and option
// objects, plus CLI argv. Every call must succeed or throw a DmError with a
// documented code; the process must not crash; once a case has undone what
// succeeded, nothing of it is left in dm.list() or loop.list().
// DEVMAPPER_FUZZ_CALLS sets the number of calls (default 10,000).
import fc from 'fast-check';
import { constants } from 'node:os';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../lib/cli/main';
import { dm, DmError, loop, ThinPool } from '../../lib/index';
import { PREFIX, RUN, SCRATCH, sparseFile, sweep } from './helpers';

const CALLS = Number(process.env.DEVMAPPER_FUZZ_CALLS ?? 10_000);
const LIBRARY_CODES = [
  'ERR_DM_INVALID_ARG',
  'ERR_DM_DECODE',
  'ERR_DM_PARSE',
  'ERR_DM_UNAVAILABLE',
  'ERR_DM_ABORTED',
  'ERR_DM_TIMEOUT',
  'ERR_DM_LOCKED',
  'ERR_DM_POOL_FULL',
  'ERR_DM_CORRUPT',
  'ERR_DM_TOOL',
];
const documented = (code: string) => LIBRARY_CODES.includes(code) || code in constants.errno;

beforeAll(sweep);
afterAll(sweep);

// Names: a few shared ones so that calls meet each other's devices, prefixed
// arbitrary text (often invalid), hostile constants and non-strings. A name
// that validation accepts always carries the run's prefix, so nothing made
// here can collide with the host's devices and the sweep finds it all.
const shared = fc.constantFrom('a', 'b', 'c').map((s) => `${RUN}fz-${s}`);
const name = fc.oneof(
  { weight: 4, arbitrary: shared },
  { weight: 2, arbitrary: fc.string({ maxLength: 24, unit: 'binary' }).map((s) => `${RUN}fz-${s}`) },
  {
    weight: 1,
    arbitrary: fc.constantFrom('', '.', '..', 'a/b', 'control', 'x'.repeat(128), `${RUN}${'y'.repeat(120)}`, 'tab\there', 'nul\0x'),
  },
  { weight: 1, arbitrary: fc.oneof(fc.integer(), fc.constant(null), fc.constant(undefined), fc.object(), fc.array(fc.string())) },
);
const ref = fc.oneof(
  { weight: 5, arbitrary: name },
  { weight: 1, arbitrary: fc.record({ uuid: fc.string({ maxLength: 140 }) }) },
  { weight: 1, arbitrary: fc.record({ major: fc.constantFrom(-1, 0, 1, 7, 4096, 2 ** 31), minor: fc.integer({ min: -1, max: 300 }) }) },
);
const count = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 1 << 16 }) },
  {
    weight: 1,
    arbitrary: fc.oneof(
      fc.integer(),
      fc.double(),
      fc.constant(2 ** 53),
      fc.constant(Number.NaN),
      fc.constant(-0),
      fc.string({ maxLength: 6 }),
      fc.constant(null),
    ),
  },
);
const size = fc.oneof(count, fc.constantFrom('1M', '64M', '4K', '1.5G', '-1M', 'lots', '', '1e3', '0x10', '512B'));
const params = fc.oneof(
  fc.constantFrom('', '0', `/dev/loop0 0`, '1 2 3', 'a b c d e f', 'x'.repeat(5000)),
  fc.string({ maxLength: 64, unit: 'binary' }),
);
const targetType = fc.oneof(
  fc.constantFrom('zero', 'error', 'linear', 'striped', 'thin', 'thin-pool', 'snapshot', 'flakey', 'delay', 'crypt', 'mirror'),
  fc.string({ maxLength: 20 }),
);
const target = fc.record({ start: count, length: count, type: targetType, params });
const table = fc.oneof({ weight: 3, arbitrary: fc.array(target, { minLength: 1, maxLength: 3 }) }, { weight: 1, arbitrary: fc.anything() });
// A zero-target table that is valid, so that later calls find a device.
const goodTable = fc.integer({ min: 1, max: 64 }).map((n) => [{ start: 0, length: n * 8, type: 'zero', params: '' }]);
const options = (known: Record<string, fc.Arbitrary<unknown>>) =>
  fc.oneof({ weight: 4, arbitrary: fc.record(known, { requiredKeys: [] }) }, { weight: 1, arbitrary: fc.anything() });
const message = fc.oneof(
  fc.constantFrom('create_thin 1', 'delete 1', '@stats_list', '@cancel_deferred_remove', 'set_transaction_id 0 1', 'reserve_metadata_snap'),
  fc.string({ maxLength: 40, unit: 'binary' }),
);
const thinId = fc.oneof(
  fc.integer({ min: 0, max: 8 }),
  fc.integer({ min: -2, max: 2 ** 24 + 1 }),
  fc.constant(undefined),
  fc.constant('1' as unknown as number),
);

type Call = { what: string; run: (ctx: Ctx) => Promise<unknown> };
interface Ctx {
  pool: ThinPool;
  file: string;
}

const call = (what: string, arb: fc.Arbitrary<(ctx: Ctx) => Promise<unknown>>): fc.Arbitrary<Call> => arb.map((run) => ({ what, run }));
const calls: fc.Arbitrary<Call> = fc.oneof(
  call(
    'dm.create',
    fc.tuple(name, options({ table: fc.oneof(goodTable, table), uuid: fc.string({ maxLength: 130 }), readOnly: fc.anything() })).map(
      ([n, o]) =>
        () =>
          dm.create(n as string, o as dm.CreateOptions),
    ),
  ),
  call(
    'dm.create (valid)',
    fc.tuple(shared, goodTable).map(
      ([n, t]) =>
        () =>
          dm.create(n, { table: t }),
    ),
  ),
  call(
    'dm.load',
    fc.tuple(ref, table).map(
      ([r, t]) =>
        () =>
          dm.load(r as dm.DeviceRef, t as dm.Target[]),
    ),
  ),
  call(
    'dm.suspend',
    fc.tuple(ref, options({ noFlush: fc.boolean(), noLockfs: fc.anything() })).map(
      ([r, o]) =>
        () =>
          dm.suspend(r as dm.DeviceRef, o as never),
    ),
  ),
  call(
    'dm.resume',
    ref.map((r) => () => dm.resume(r as dm.DeviceRef)),
  ),
  call(
    'dm.remove',
    fc.tuple(ref, options({ deferred: fc.boolean(), retry: fc.oneof(fc.boolean(), fc.record({ attempts: count, delayMs: count })) })).map(
      ([r, o]) =>
        () =>
          dm.remove(r as dm.DeviceRef, o as never),
    ),
  ),
  call(
    'dm.rename',
    fc.tuple(ref, name).map(
      ([r, n]) =>
        () =>
          dm.rename(r as string, n as string),
    ),
  ),
  call(
    'dm.setUuid',
    fc.tuple(name, fc.string({ maxLength: 140 })).map(
      ([n, u]) =>
        () =>
          dm.setUuid(n as string, u),
    ),
  ),
  call(
    'dm.info/table/status/deps',
    fc.tuple(ref, fc.constantFrom('info', 'table', 'status', 'deps')).map(
      ([r, f]) =>
        () =>
          (dm[f as 'info'] as (x: unknown) => Promise<unknown>)(r),
    ),
  ),
  call(
    'dm.message',
    fc.tuple(ref, message, options({ sector: count })).map(
      ([r, m, o]) =>
        () =>
          dm.message(r as dm.DeviceRef, m, o as never),
    ),
  ),
  call(
    'dm.wait',
    fc.tuple(ref, count).map(
      ([r, n]) =>
        async () =>
          dm.wait(r as dm.DeviceRef, n as number, { signal: AbortSignal.timeout(20) }),
    ),
  ),
  call(
    'dm.setGeometry',
    fc.tuple(ref, fc.record({ cylinders: count, heads: count, sectors: count, start: count })).map(
      ([r, g]) =>
        () =>
          dm.setGeometry(r as dm.DeviceRef, g as never),
    ),
  ),
  call(
    'dm.list/version/targets',
    fc.constantFrom('list', 'version', 'targets').map((f) => () => (dm[f as 'list'] as () => Promise<unknown>)()),
  ),
  call(
    'dm.targetVersion',
    targetType.map((t) => () => dm.targetVersion(t)),
  ),
  call(
    'loop.attach',
    fc
      .tuple(
        fc.oneof(fc.constant('FILE'), fc.constantFrom('', '/nonexistent', '/dev/null', '/proc/self/status', 'rel/path'), fc.anything()),
        options({
          offset: count,
          sizeLimit: count,
          readOnly: fc.boolean(),
          autoclear: fc.boolean(),
          directIo: fc.anything(),
          legacy: fc.boolean(),
        }),
      )
      .map(
        ([f, o]) =>
          (ctx: Ctx) =>
            loop.attach((f === 'FILE' ? ctx.file : f) as string, o as never),
      ),
  ),
  call(
    'loop.info',
    fc
      .oneof(fc.integer({ min: -1, max: 300 }), fc.constantFrom('/dev/loop0', '/dev/null', 'loop1', ''), fc.anything())
      .map((l) => () => loop.info(l as never)),
  ),
  // Only refs that are not loop devices: the guest's other loops belong to other tests.
  call(
    'loop.detach',
    fc
      .oneof(fc.constantFrom(-1, 2 ** 31, '', '/dev/null', '/nonexistent', 'loop1', `${'/'.repeat(5000)}`), fc.anything())
      .map((l) => () => loop.detach(l as never)),
  ),
  call(
    'pool.createThin',
    thinId.map((id) => (ctx: Ctx) => ctx.pool.createThin(id)),
  ),
  call(
    'pool.createSnapshot',
    fc.tuple(thinId, thinId).map(
      ([id, origin]) =>
        (ctx: Ctx) =>
          ctx.pool.createSnapshot(id, origin as number),
    ),
  ),
  call(
    'pool.deleteThin',
    thinId.map((id) => (ctx: Ctx) => ctx.pool.deleteThin(id as number)),
  ),
  call(
    'pool.activate',
    fc.tuple(thinId, options({ name, size, readOnly: fc.anything() })).map(
      ([id, o]) =>
        (ctx: Ctx) =>
          ctx.pool.activate(id as number, o as never),
    ),
  ),
  call(
    'pool.deactivate',
    fc.tuple(name, options({ deferred: fc.anything() })).map(
      ([n, o]) =>
        (ctx: Ctx) =>
          ctx.pool.deactivate(n as string, o as never),
    ),
  ),
  call(
    'pool.createThinDevice',
    options({ id: thinId, name, size, readOnly: fc.anything() }).map((o) => (ctx: Ctx) => ctx.pool.createThinDevice(o as never)),
  ),
  call(
    'pool.createSnapshotDevice',
    fc.tuple(thinId, options({ id: thinId, name, size, readOnly: fc.anything() })).map(
      ([origin, o]) =>
        (ctx: Ctx) =>
          ctx.pool.createSnapshotDevice(origin as number, o as never),
    ),
  ),
  call(
    'pool.removeThinDevice',
    fc.tuple(name, thinId).map(
      ([n, id]) =>
        (ctx: Ctx) =>
          ctx.pool.removeThinDevice(n as string, id as number),
    ),
  ),
  call(
    'pool.resize',
    options({ dataSize: size, metadataSize: size, lowWaterMark: count }).map((o) => (ctx: Ctx) => ctx.pool.resize(o as never)),
  ),
  call(
    'pool.watch',
    options({ autoExtend: options({ threshold: count, percent: count, max: size }) }).map(
      (o) => async (ctx: Ctx) => ctx.pool.watch(o as never).close(),
    ),
  ),
  call(
    'ThinPool.open/create',
    fc
      .tuple(
        name,
        fc.constantFrom('open', 'create', 'createLoopBacked'),
        options({
          name,
          dataDevice: fc.constantFrom('/dev/null', '/nonexistent'),
          metadataDevice: fc.constant('/dev/null'),
          dir: fc.constantFrom('', 'rel'),
          dataSize: size,
          blockSize: size,
        }),
      )
      .map(
        ([n, f, o]) =>
          async () =>
            f === 'open'
              ? ThinPool.open(n as string)
              : f === 'create'
                ? ThinPool.create(o as never)
                : ThinPool.createLoopBacked({ ...(o as object), dir: '' } as never),
      ),
  ),
);

/** What exists now: device names, and loop devices when `loops` (only some calls attach loops; listing them is slow). */
async function snapshot(loops = true): Promise<{ devices: Set<string>; loops: Set<string> }> {
  return { devices: new Set((await dm.list()).map((d) => d.name)), loops: new Set(loops ? (await loop.list()).map((l) => l.path) : []) };
}
const attaches = (what: string) => what === 'loop.attach' || what.startsWith('ThinPool.');

/**
 * Run one call. A failure must be a documented DmError and must leave no new
 * device or loop behind; what a success attached is recorded for undo.
 */
const outcomes = new Map<string, number>();
const tally = (o: string) => outcomes.set(o, (outcomes.get(o) ?? 0) + 1);

async function attempt(c: Call, ctx: Ctx, made: { loops: Set<string>; held: loop.LoopDevice[] }): Promise<void> {
  const before = await snapshot(attaches(c.what));
  let result: unknown;
  try {
    result = await c.run(ctx);
  } catch (e) {
    if (!(e instanceof DmError)) throw new Error(`${c.what} threw a non-DmError: ${String(e)}`, { cause: e });
    if (!documented(e.code)) throw new Error(`${c.what} threw an undocumented code ${e.code}: ${e.message}`);
    tally(e.code);
    const after = await snapshot(attaches(c.what));
    expect(
      [...after.devices].filter((d) => !before.devices.has(d)),
      `${c.what} failed (${e.code}) but left devices`,
    ).toEqual([]);
    expect(
      [...after.loops].filter((l) => !before.loops.has(l)),
      `${c.what} failed (${e.code}) but left loops`,
    ).toEqual([]);
    return;
  }
  tally('ok');
  if (c.what === 'loop.attach') {
    made.loops.add((result as loop.LoopDevice).path);
    made.held.push(result as loop.LoopDevice); // an autoclear device goes only once its handle is released
  }
}

/** Undo a case: its devices (the pool's thin devices too), then its loops; the pool stays. */
async function undo(ctx: Ctx, made: { loops: Set<string>; held: loop.LoopDevice[] }): Promise<void> {
  for (let round = 0; round < 5; round++) {
    const ours = (await dm.list()).filter((d) => d.name.startsWith(`${RUN}fz-`));
    if (ours.length === 0) break;
    for (const d of ours) {
      await dm.resume(d.name).catch(() => undefined);
      await dm.remove(d.name, { retry: true }).catch(() => undefined);
    }
  }
  await dm.resume(ctx.pool.name).catch(() => undefined);
  for (const l of made.loops) await loop.detach(l).catch(() => undefined);
  for (const h of made.held) await h.release().catch(() => undefined);
}

describe('fuzzed public API', () => {
  it(`${CALLS} generated calls: each succeeds or throws a documented DmError, and nothing is left behind`, async () => {
    const pool = await ThinPool.createLoopBacked({ dir: `${SCRATCH}/fz`, name: `${RUN}fzpool`, dataSize: '64M', metadataSize: '16M' });
    const ctx: Ctx = { pool, file: await sparseFile('fz-file', 1 << 20) };
    const baseline = new Set((await loop.list()).map((l) => l.path));
    let made = 0;
    const perKind = new Map<string, number>();
    const t0 = Date.now();
    const property = fc.asyncProperty(fc.array(calls, { minLength: 1, maxLength: 10 }), async (seq) => {
      const mine = { loops: new Set<string>(), held: [] as loop.LoopDevice[] };
      try {
        for (const c of seq) {
          await attempt(c, ctx, mine);
          perKind.set(c.what, (perKind.get(c.what) ?? 0) + 1);
          made++;
        }
      } finally {
        await undo(ctx, mine);
      }
      const left = (await dm.list()).filter((d) => d.name.startsWith(PREFIX) && d.name !== pool.name);
      expect(left.map((d) => d.name)).toEqual([]);
      const loops = (await loop.list()).filter((l) => !baseline.has(l.path));
      expect(loops.map((l) => `${l.path} ${l.backingFile}`)).toEqual([]);
      expect((await pool.status()).mode).toBe('rw');
    });
    // Batches until the count is reached (a case holds 1..10 calls).
    while (made < CALLS) await fc.assert(property, { numRuns: Math.ceil((CALLS - made) / 5.5), endOnFailure: true });
    console.log(
      `fuzzed API outcomes: ${[...outcomes]
        .sort((a, b) => b[1] - a[1])
        .map(([k, n]) => `${k} ${n}`)
        .join(', ')}`,
    );
    expect(outcomes.get('ok')).toBeGreaterThan(made / 10); // the calls reach the kernel, not only validation
    console.log(`fuzzed API: ${made} calls in ${Date.now() - t0} ms; ${[...perKind].map(([k, n]) => `${k} ${n}`).join(', ')}`);
    expect(made).toBeGreaterThanOrEqual(CALLS);
    await pool.destroy();
  }, 600_000);

  it('CLI argv: exit 0, 1 or 2 with a message, never a crash, nothing left behind', async () => {
    const verbs = [
      ['version'],
      ['ls'],
      ['info'],
      ['table'],
      ['status'],
      ['status', '--raw'],
      ['create'],
      ['reload'],
      ['deps'],
      ['mknodes'],
      ['remove'],
      ['remove', '--deferred'],
      ['suspend'],
      ['resume'],
      ['message'],
      ['loop', 'ls'],
      ['loop', 'info'],
      ['loop', 'attach'],
      ['pool', 'status'],
      ['pool', 'resize'],
      ['pool', 'destroy'],
      ['thin', 'create'],
      ['thin', 'snapshot'],
      ['thin', 'activate'],
      ['thin', 'deactivate'],
      ['thin', 'delete'],
      ['no-such-verb'],
      [],
    ];
    const token = fc.oneof(
      fc.constantFrom(
        `${RUN}fz-a`,
        `${RUN}fz-b`,
        `${RUN}fzcli-pool`,
        '0',
        '1',
        '-1',
        '7',
        '1G',
        'x'.repeat(200),
        '',
        '--json',
        '--help',
        '--table',
        '0 8 zero',
        '0 8 zero; 8 8 error',
        '--name',
        '--size',
        '64M',
        '--data-size',
        '--offset',
        '-',
        '--',
        'control',
        '/dev/null',
        '/nonexistent',
      ),
      fc.string({ maxLength: 12 }).map((s) => `${RUN}fz-${s}`),
      fc.string({ maxLength: 8 }).filter((s) => s.startsWith('-')),
    );
    const stdinText = fc.oneof(
      fc.constantFrom('', '0 8 zero\n', '# a comment\n0 8 zero\n8 8 error\n', '0 8 nosuch'),
      fc.string({ maxLength: 40 }),
    );
    const pool = await ThinPool.createLoopBacked({
      dir: `${SCRATCH}/fzcli`,
      name: `${RUN}fzcli-pool`,
      dataSize: '64M',
      metadataSize: '4M',
    });
    const quiet = [
      vi.spyOn(console, 'log').mockImplementation(() => undefined),
      vi.spyOn(console, 'error').mockImplementation(() => undefined),
      vi.spyOn(process.stdout, 'write').mockImplementation(() => true),
      vi.spyOn(process.stderr, 'write').mockImplementation(() => true),
    ];
    const codes = new Map<number, number>();
    let runs = 0;
    try {
      await fc.assert(
        fc.asyncProperty(fc.constantFrom(...verbs), fc.array(token, { maxLength: 5 }), stdinText, async (verb, args, input) => {
          const argv = [...verb, ...args];
          if (argv.includes('repl') || argv.includes('wait') || argv[0] === 'set') return; // interactive / unbounded / makes 100G pools
          const before = await snapshot();
          // What a table FILE of '-' reads, ended as a pipe's would be (the worker's own stdin never ends).
          const stdin = vi.spyOn(process, 'stdin', 'get').mockReturnValue(Readable.from([input]) as unknown as typeof process.stdin);
          const code = await main(argv).finally(() => stdin.mockRestore());
          codes.set(code, (codes.get(code) ?? 0) + 1);
          runs++;
          expect([0, 1, 2]).toContain(code);
          const after = await snapshot();
          const newDevices = [...after.devices].filter((d) => !before.devices.has(d));
          const newLoops = [...after.loops].filter((l) => !before.loops.has(l));
          // What a successful command made is removed again (names need not carry the prefix here).
          for (const d of newDevices) await dm.remove(d, { retry: true }).catch(() => undefined);
          for (const l of newLoops) await loop.detach(l).catch(() => undefined);
          if (code !== 0) expect({ argv, newDevices, newLoops }).toEqual({ argv, newDevices: [], newLoops: [] });
          await undo({ pool, file: '' }, { loops: new Set(), held: [] });
        }),
        { numRuns: 400, endOnFailure: true },
      );
    } finally {
      for (const q of quiet) q.mockRestore();
    }
    console.log(`fuzzed CLI: ${runs} argv, exit codes ${[...codes].map(([c, n]) => `${c}×${n}`).join(' ')}`);
    expect(codes.get(2)).toBeGreaterThan(0);
    // A pool the CLI destroyed is gone; otherwise it is still a pool.
    const still = await dm.info(pool.name).then(
      () => true,
      () => false,
    );
    if (still) await pool.destroy();
  }, 600_000);
});
