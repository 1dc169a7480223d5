// Target grammars: parse ∘ format is the identity on typed params and
// statuses, lines the kernel prints (and the docs show) parse, and nothing but
// an ERR_DM_PARSE DmError quoting the line ever escapes a parser.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DmError } from '../../lib/errors';
import * as T from '../../lib/targets/index';

const RUNS = 2000;
const uint = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const small = fc.integer({ min: 0, max: 2 ** 32 - 1 });
const dev = fc.oneof(
  fc.integer({ min: 0, max: 4095 }).map((n) => `/dev/loop${n}`),
  fc.tuple(fc.integer({ min: 0, max: 4095 }), fc.integer({ min: 0, max: (1 << 20) - 1 })).map(([a, b]) => `${a}:${b}`),
  fc.constantFrom('/dev/mapper/vg-data', '/dev/sdb1'),
);
const word = fc.stringMatching(/^[a-z_]{1,20}$/);
const delayClass = fc.record({ device: dev, offset: uint, delayMs: small });

const params: Record<T.KnownTargetType, fc.Arbitrary<unknown>> = {
  'thin-pool': fc.record({
    metadataDevice: dev,
    dataDevice: dev,
    dataBlockSectors: uint,
    lowWaterMark: uint,
    features: fc.array(
      fc.oneof(fc.constantFrom('skip_block_zeroing', 'ignore_discard', 'no_discard_passdown', 'read_only', 'error_if_no_space'), word),
      { maxLength: 6 },
    ),
  }),
  thin: fc.record(
    { poolDevice: dev, thinId: fc.integer({ min: 0, max: 2 ** 24 - 1 }), externalOrigin: dev },
    { requiredKeys: ['poolDevice', 'thinId'] },
  ),
  linear: fc.record({ device: dev, offset: uint }),
  zero: fc.constant({}),
  error: fc.constant({}),
  snapshot: fc.record({
    origin: dev,
    cow: dev,
    persistence: fc.constantFrom('P', 'N', 'PO'),
    chunkSectors: uint,
    features: fc.array(fc.oneof(fc.constantFrom('discard_zeroes_cow', 'discard_passdown_origin'), word), { maxLength: 3 }),
  }),
  'snapshot-origin': fc.record({ origin: dev }),
  flakey: fc.record({
    device: dev,
    offset: uint,
    upInterval: small,
    downInterval: small,
    features: fc
      .array(
        fc.oneof(
          fc.constant(T.flakeyFeatures.dropWrites()),
          fc.constant(T.flakeyFeatures.errorWrites()),
          fc
            .tuple(small, fc.constantFrom('r' as const, 'w' as const), fc.integer({ min: 0, max: 255 }), small)
            .map(([n, d, v, f]) => T.flakeyFeatures.corruptBioByte(n, d, v, f)),
          fc.array(word, { minLength: 1, maxLength: 3 }), // features this library does not know
        ),
        { maxLength: 3 },
      )
      .map((groups) => groups.flat()),
  }),
  delay: fc.oneof(
    fc.record({ read: delayClass }),
    fc.record({ read: delayClass, write: delayClass }),
    fc.record({ read: delayClass, write: delayClass, flush: delayClass }),
  ),
};

const thinPoolStatus = fc.oneof(
  fc.constantFrom({ state: 'fail' }, { state: 'error' }),
  fc
    .record(
      {
        transactionId: uint,
        usedMetadataBlocks: uint,
        totalMetadataBlocks: uint,
        usedDataBlocks: uint,
        totalDataBlocks: uint,
        heldMetadataRoot: fc.option(uint, { nil: null }),
        mode: fc.constantFrom('rw', 'ro', 'out_of_data_space'),
        discard: fc.constantFrom('discard_passdown', 'no_discard_passdown', 'ignore_discard'),
        errorIfNoSpace: fc.boolean(),
        needsCheck: fc.boolean(),
        metadataLowWatermark: uint,
      },
      {
        requiredKeys: [
          'transactionId',
          'usedMetadataBlocks',
          'totalMetadataBlocks',
          'usedDataBlocks',
          'totalDataBlocks',
          'heldMetadataRoot',
          'mode',
          'discard',
          'errorIfNoSpace',
          'needsCheck',
        ],
      },
    )
    .map(({ discard, ...s }) => ({
      state: 'ok',
      ...s,
      discardPassdown: discard === 'discard_passdown',
      ...(discard === 'ignore_discard' ? { ignoreDiscard: true } : {}),
    })),
);

/** Per type: valid statuses and their formatter ('' for targets whose status is empty). */
const statuses: Record<T.KnownTargetType, [fc.Arbitrary<unknown>, (s: never) => string]> = {
  'thin-pool': [thinPoolStatus, T.formatThinPoolStatus],
  thin: [
    fc.oneof(
      fc.constantFrom({ state: 'fail' }, { state: 'error' }),
      fc.record({ state: fc.constant('ok'), mappedSectors: uint, highestMappedSector: fc.option(uint, { nil: null }) }),
    ),
    T.formatThinStatus,
  ],
  linear: [fc.constant({}), () => ''],
  zero: [fc.constant({}), () => ''],
  error: [fc.constant({}), () => ''],
  snapshot: [
    fc.oneof(
      fc.constantFrom({ state: 'invalid' }, { state: 'merge-failed' }, { state: 'overflow' }, { state: 'unknown' }),
      fc.record({ state: fc.constant('ok'), allocatedSectors: uint, totalSectors: uint, metadataSectors: uint }),
    ),
    T.formatSnapshotStatus,
  ],
  'snapshot-origin': [fc.constant({}), () => ''],
  flakey: [fc.constant({}), () => ''],
  delay: [fc.record({ reads: small, writes: small, flushes: small }, { requiredKeys: ['reads', 'writes'] }), T.formatDelayStatus],
};

const types = Object.keys(params) as T.KnownTargetType[];

// fast-check may build null-prototype records; parsers return plain objects.
const plain = (v: unknown) => JSON.parse(JSON.stringify(v)) as unknown;

const WEIRD = [
  '99999999999999999999',
  '9007199254740992',
  '-1',
  '1.5',
  '1e3',
  '0x10',
  '',
  'x',
  '/',
  '1/',
  '/1',
  '-',
  'Fail',
  'Error',
  'Merge',
  'constructor',
  '__proto__',
  'toString',
  '\0',
  'é',
];

/** Damaged versions of a valid line: truncated, extra or missing tokens, wrong counts, odd words. */
function mutations(line: string): fc.Arbitrary<string> {
  const words = line.trim() === '' ? [] : line.trim().split(' ');
  const at = fc.nat(Math.max(words.length, 1));
  const withWord = (i: number, w: string | null) => [...words.slice(0, i), ...(w === null ? [] : [w]), ...words.slice(i + 1)].join(' ');
  return fc.oneof(
    fc.nat(line.length).map((n) => line.slice(0, n)),
    at.map((n) => words.slice(0, n).join(' ')),
    fc
      .array(fc.oneof(fc.constantFrom(...WEIRD), fc.nat().map(String), word), { minLength: 1, maxLength: 6 })
      .map((extra) => `${line} ${extra.join(' ')}`),
    fc.string({ maxLength: 20 }).map((extra) => `${line} ${extra}`),
    at.map((i) => withWord(i, null)),
    at.map((i) =>
      words
        .slice(0, i + 1)
        .concat(words.slice(i))
        .join(' '),
    ),
    fc.tuple(at, fc.constantFrom(...WEIRD)).map(([i, w]) => withWord(i, w)),
    // Wrong counts: every number nudged up or down.
    fc
      .tuple(at, fc.constantFrom(-1, 1, 2, 1000))
      .map(([i, d]) => withWord(i, /^\d+$/.test(words[i] ?? '') ? String(Number(words[i]) + d) : (words[i] ?? '1'))),
    fc.constantFrom(`\t${line}\n`, line.replace(/ /g, '\t'), line.replace(/ /g, '  '), line.toUpperCase(), line.toLowerCase()),
  );
}

const KERNEL_STATUS_LINES = [
  '0 141/4161600 0/1638400 - rw discard_passdown queue_if_no_space - 1024 ',
  '0 -',
  '16384 65535',
  '32/131072 32',
  'Merge failed',
  '0 0 0',
  '3 4',
];

describe('round trips', () => {
  for (const type of types) {
    it(`${type}: parse(format(p)) equals p`, () => {
      const g = T.grammars[type]!;
      fc.assert(
        fc.property(params[type], (p) => {
          expect(g.parse(g.format(p))).toEqual(plain(p));
        }),
        { numRuns: RUNS },
      );
    });
    it(`${type} status: parseStatus(format(s)) equals s`, () => {
      const g = T.grammars[type]!;
      const [arb, format] = statuses[type];
      fc.assert(
        fc.property(arb, (s) => {
          expect(g.parseStatus(format(s as never))).toEqual(plain(s));
        }),
        { numRuns: RUNS },
      );
    });
  }
});

describe('parsers throw nothing but ERR_DM_PARSE, quoting the line', () => {
  // Returns true when text parses or fails the way it should.
  const behaves = (parse: (text: string) => unknown, text: string) => {
    try {
      parse(text);
      return true;
    } catch (e) {
      return e instanceof DmError && e.code === 'ERR_DM_PARSE' && e.message.includes(JSON.stringify(text));
    }
  };
  for (const type of types) {
    const g = T.grammars[type]!;
    const [statusArb, formatStatus] = statuses[type];
    const tableLines = params[type].map((p) => g.format(p));
    const statusLines = statusArb.map((s) => formatStatus(s as never));
    const inputs = (valid: fc.Arbitrary<string>) =>
      fc.oneof(
        fc.string({ unit: 'binary', maxLength: 200 }),
        valid.chain(mutations),
        fc.constantFrom(...KERNEL_STATUS_LINES).chain(mutations),
      );
    it(`${type} parse`, () => {
      fc.assert(
        fc.property(inputs(tableLines), (text) => behaves(g.parse, text)),
        { numRuns: RUNS },
      );
    });
    it(`${type} parseStatus`, () => {
      fc.assert(
        fc.property(inputs(statusLines), (text) => behaves(g.parseStatus, text)),
        { numRuns: RUNS },
      );
    });
  }
});

describe('lines from real kernels and the documentation', () => {
  const healthy = {
    state: 'ok',
    transactionId: 0,
    usedMetadataBlocks: 141,
    totalMetadataBlocks: 4161600,
    usedDataBlocks: 0,
    totalDataBlocks: 1638400,
    heldMetadataRoot: null,
    mode: 'rw',
    discardPassdown: true,
    errorIfNoSpace: false,
    needsCheck: false,
  };

  it('thin-pool status: with the metadata low watermark, without it (older kernels), and the failure forms', () => {
    expect(T.thinPool.parseStatus('0 141/4161600 0/1638400 - rw discard_passdown queue_if_no_space - 1024 ')).toEqual({
      ...healthy,
      metadataLowWatermark: 1024,
    });
    expect(T.thinPool.parseStatus('0 141/4161600 0/1638400 - rw discard_passdown queue_if_no_space -')).toEqual(healthy);
    expect(
      T.thinPool.parseStatus('7 10/512 1638400/1638400 42 out_of_data_space no_discard_passdown error_if_no_space needs_check 64'),
    ).toEqual({
      state: 'ok',
      transactionId: 7,
      usedMetadataBlocks: 10,
      totalMetadataBlocks: 512,
      usedDataBlocks: 1638400,
      totalDataBlocks: 1638400,
      heldMetadataRoot: 42,
      mode: 'out_of_data_space',
      discardPassdown: false,
      errorIfNoSpace: true,
      needsCheck: true,
      metadataLowWatermark: 64,
    });
    expect(T.thinPool.parseStatus('3 20/4096 5/1024 - ro no_discard_passdown queue_if_no_space needs_check 1024')).toMatchObject({
      mode: 'ro',
      needsCheck: true,
    });
    expect(T.thinPool.parseStatus('Fail')).toEqual({ state: 'fail' });
    expect(T.thinPool.parseStatus('Error')).toEqual({ state: 'error' });
  });

  it('thin-pool status with ignore_discard, which dm-thin.c prints and the docs leave out', () => {
    const s = T.thinPool.parseStatus('0 11/4096 0/1024 - rw ignore_discard error_if_no_space - 1024 ');
    expect(s).toEqual({
      ...healthy,
      usedMetadataBlocks: 11,
      totalMetadataBlocks: 4096,
      totalDataBlocks: 1024,
      discardPassdown: false,
      ignoreDiscard: true,
      errorIfNoSpace: true,
      metadataLowWatermark: 1024,
    });
    expect(T.formatThinPoolStatus(s)).toBe('0 11/4096 0/1024 - rw ignore_discard error_if_no_space - 1024');
  });

  it('thin-pool tables keep their feature order, and read the count of 0 the kernel prints', () => {
    expect(T.thinPool.parse('254:1 254:2 128 32768 2 skip_block_zeroing error_if_no_space').features).toEqual([
      'skip_block_zeroing',
      'error_if_no_space',
    ]);
    expect(T.thinPool.parse('254:1 254:2 128 32768 2 error_if_no_space skip_block_zeroing').features).toEqual([
      'error_if_no_space',
      'skip_block_zeroing',
    ]);
    expect(T.thinPool.parse('254:1 254:2 128 32768')).toEqual({
      metadataDevice: '254:1',
      dataDevice: '254:2',
      dataBlockSectors: 128,
      lowWaterMark: 32768,
      features: [],
    });
    expect(T.thinPool.parse('7:1 7:0 256 32768 0 ').features).toEqual([]);
    expect(
      T.thinPool.format({
        metadataDevice: '7:1',
        dataDevice: '7:0',
        dataBlockSectors: 256,
        lowWaterMark: 0,
        features: ['read_only', 'skip_block_zeroing'],
      }),
    ).toBe('7:1 7:0 256 0 2 read_only skip_block_zeroing');
  });

  it('thin tables and statuses', () => {
    expect(T.thin.parseStatus('0 -')).toEqual({ state: 'ok', mappedSectors: 0, highestMappedSector: null });
    expect(T.thin.parseStatus('16384 65535')).toEqual({ state: 'ok', mappedSectors: 16384, highestMappedSector: 65535 });
    expect(T.thin.parseStatus('Fail')).toEqual({ state: 'fail' });
    expect(T.thin.parseStatus('Error')).toEqual({ state: 'error' });
    expect(T.thin.parse('253:3 7')).toEqual({ poolDevice: '253:3', thinId: 7 });
    expect(T.thin.parse('253:3 7 7:4')).toEqual({ poolDevice: '253:3', thinId: 7, externalOrigin: '7:4' });
    // A thin device of a failed pool prints "Fail" for its table too.
    expect(() => T.thin.parse('Fail')).toThrow(
      expect.objectContaining({ code: 'ERR_DM_PARSE', message: expect.stringContaining('pool has failed') }),
    );
  });

  it('snapshot tables: P, N, PO in any case, features only when there are some', () => {
    expect(T.snapshot.parse('7:0 7:1 P 16')).toEqual({ origin: '7:0', cow: '7:1', persistence: 'P', chunkSectors: 16, features: [] });
    expect(T.snapshot.parse('7:0 7:1 p 16').persistence).toBe('P');
    expect(T.snapshot.parse('7:0 7:1 N 8').persistence).toBe('N');
    for (const po of ['PO', 'po', 'Po', 'pO']) expect(T.snapshot.parse(`7:0 7:1 ${po} 8`).persistence).toBe('PO');
    expect(T.snapshot.parse('7:0 7:1 PO 16 2 discard_zeroes_cow discard_passdown_origin').features).toEqual([
      'discard_zeroes_cow',
      'discard_passdown_origin',
    ]);
    expect(T.snapshot.parse('7:0 7:1 P 16 2 discard_passdown_origin discard_zeroes_cow').features).toEqual([
      'discard_passdown_origin',
      'discard_zeroes_cow',
    ]);
    expect(() => T.snapshot.parse('7:0 7:1 X 16')).toThrow(
      expect.objectContaining({ code: 'ERR_DM_PARSE', message: expect.stringContaining("'X'") }),
    );
    expect(() => T.snapshot.parse('7:0 7:1 NO 16')).toThrow(expect.objectContaining({ code: 'ERR_DM_PARSE' }));
  });

  it('snapshot statuses', () => {
    expect(T.snapshot.parseStatus('32/131072 32')).toEqual({
      state: 'ok',
      allocatedSectors: 32,
      totalSectors: 131072,
      metadataSectors: 32,
    });
    expect(T.snapshot.parseStatus('0/131072 0')).toEqual({ state: 'ok', allocatedSectors: 0, totalSectors: 131072, metadataSectors: 0 });
    expect(T.snapshot.parseStatus('Invalid')).toEqual({ state: 'invalid' });
    expect(T.snapshot.parseStatus('Merge failed')).toEqual({ state: 'merge-failed' });
    expect(T.snapshot.parseStatus('Overflow')).toEqual({ state: 'overflow' });
    expect(T.snapshot.parseStatus('Unknown')).toEqual({ state: 'unknown' });
    for (const bad of ['Merge', 'Merge ok', 'Invalid 1', 'invalid', 'constructor', 'toString', '__proto__', '32/131072', '32 131072 32']) {
      expect(() => T.snapshot.parseStatus(bad), bad).toThrow(expect.objectContaining({ code: 'ERR_DM_PARSE' }));
    }
  });

  it('snapshot-origin, linear, zero, error', () => {
    expect(T.snapshotOrigin.parse('7:0')).toEqual({ origin: '7:0' });
    expect(T.linear.parse('7:0 8')).toEqual({ device: '7:0', offset: 8 });
    expect(T.zero.parse('')).toEqual({});
    expect(T.error.parse(' ')).toEqual({});
    for (const g of [T.linear, T.zero, T.error, T.snapshotOrigin, T.flakey]) expect(g.parseStatus('')).toEqual({});
    expect(() => T.zero.parse('7:0')).toThrow(expect.objectContaining({ code: 'ERR_DM_PARSE' }));
  });

  it('flakey: the zero count and trailing space 6.1 prints, features as words in the order given', () => {
    expect(T.flakey.parse('7:0 0 5 0 0 ')).toEqual({ device: '7:0', offset: 0, upInterval: 5, downInterval: 0, features: [] });
    expect(T.flakey.parse('7:0 0 1 1 6 drop_writes corrupt_bio_byte 32 r 1 0 ').features).toEqual([
      'drop_writes',
      'corrupt_bio_byte',
      '32',
      'r',
      '1',
      '0',
    ]);
    expect(T.flakey.parse('7:0 0 1 1 6 corrupt_bio_byte 32 r 1 0 drop_writes').features).toEqual([
      'corrupt_bio_byte',
      '32',
      'r',
      '1',
      '0',
      'drop_writes',
    ]);
    // A feature of a newer kernel still round-trips.
    expect(T.flakey.parse('7:0 0 1 1 2 random_read_corrupt 500000000').features).toEqual(['random_read_corrupt', '500000000']);
    expect(
      T.flakey.format({
        device: '/dev/loop0',
        offset: 0,
        upInterval: 1,
        downInterval: 1,
        features: T.flakeyFeatures.corruptBioByte(1, 'w', 255),
      }),
    ).toBe('/dev/loop0 0 1 1 5 corrupt_bio_byte 1 w 255 0');
    expect(() => T.flakey.parse('7:0 0 1 1 5 corrupt_bio_byte 32 r')).toThrow(/count 5 but only 3/);
  });

  it('delay: one, two and three classes; statuses with and without flushes', () => {
    expect(T.delay.parse('7:0 0 100')).toEqual({ read: { device: '7:0', offset: 0, delayMs: 100 } });
    expect(T.delay.parse('7:0 0 100 7:1 0 200')).toEqual({
      read: { device: '7:0', offset: 0, delayMs: 100 },
      write: { device: '7:1', offset: 0, delayMs: 200 },
    });
    expect(T.delay.parse('7:0 0 100 7:1 0 200 7:2 0 300')).toEqual({
      read: { device: '7:0', offset: 0, delayMs: 100 },
      write: { device: '7:1', offset: 0, delayMs: 200 },
      flush: { device: '7:2', offset: 0, delayMs: 300 },
    });
    expect(() => T.delay.parse('7:0 0 100 7:1 0')).toThrow(expect.objectContaining({ code: 'ERR_DM_PARSE' }));
    expect(T.delay.parseStatus('3 4 0')).toEqual({ reads: 3, writes: 4, flushes: 0 });
    expect(T.delay.parseStatus('3 4')).toEqual({ reads: 3, writes: 4 });
  });

  it('parseTable dispatches by type, typed, and refuses types it has no grammar for', () => {
    const parsed = T.parseTable({ start: 0, length: 2048, type: 'thin-pool', params: '7:1 7:0 256 32768 1 skip_block_zeroing ' });
    expect(parsed).toEqual({
      start: 0,
      length: 2048,
      type: 'thin-pool',
      params: { metadataDevice: '7:1', dataDevice: '7:0', dataBlockSectors: 256, lowWaterMark: 32768, features: ['skip_block_zeroing'] },
    });
    if (parsed.type === 'thin-pool') expect(parsed.params.dataBlockSectors).toBe(256); // narrowed by type
    expect(T.parseTable({ start: 8, length: 8, type: 'zero', params: '' })).toEqual({ start: 8, length: 8, type: 'zero', params: {} });
    for (const type of ['mirror', 'constructor', 'toString', '__proto__', '']) {
      expect(() => T.parseTable({ start: 0, length: 1, type, params: 'x y' }), type).toThrow(
        expect.objectContaining({ code: 'ERR_DM_PARSE', message: expect.stringContaining('"x y"') }),
      );
    }
    expect(Object.keys(T.grammars).sort()).toEqual([...types].sort());
    expect(T.parseTarget).toBe(T.parseTable);
  });

  it('quotes the line in ERR_DM_PARSE messages', () => {
    expect(() => T.thinPool.parseStatus('0 141/x')).toThrow(
      expect.objectContaining({ code: 'ERR_DM_PARSE', message: expect.stringContaining('"0 141/x"') }),
    );
    expect(() => T.thinPool.parse('254:1 254:2 128 32768 3 skip_block_zeroing')).toThrow(
      expect.objectContaining({ message: expect.stringMatching(/"254:1 254:2 128 32768 3 skip_block_zeroing".*count 3 but only 1/) }),
    );
    expect(() => T.delay.parseStatus('1 99999999999999999999')).toThrow(
      expect.objectContaining({ message: expect.stringMatching(/"1 99999999999999999999".*too large/) }),
    );
    expect(() => T.snapshot.parseStatus('1/2 3\n4')).toThrow(expect.objectContaining({ message: expect.stringContaining('"1/2 3\\n4"') }));
  });

  it('refuses to format what is not one word or a count', () => {
    expect(() => T.linear.format({ device: 'a b', offset: 0 })).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_ARG' }));
    expect(() => T.thin.format({ poolDevice: '/dev/x', thinId: -1 })).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_ARG' }));
    expect(() => T.thinPool.format({ metadataDevice: 'a', dataDevice: 'b', dataBlockSectors: 1.5, lowWaterMark: 0, features: [] })).toThrow(
      expect.objectContaining({ code: 'ERR_DM_INVALID_ARG' }),
    );
    expect(() => T.snapshot.format({ origin: 'a', cow: 'b', persistence: 'X' as never, chunkSectors: 8, features: [] })).toThrow(
      expect.objectContaining({ code: 'ERR_DM_INVALID_ARG' }),
    );
    expect(() => T.flakey.format({ device: 'a', offset: 0, upInterval: 1, downInterval: 1, features: ['two words'] })).toThrow(
      expect.objectContaining({ code: 'ERR_DM_INVALID_ARG' }),
    );
    expect(() => T.delay.format({ read: { device: 'a', offset: 0, delayMs: 1 }, flush: { device: 'b', offset: 0, delayMs: 1 } })).toThrow(
      expect.objectContaining({ code: 'ERR_DM_INVALID_ARG' }),
    );
  });
});
