// Target grammars: format ∘ parse is the identity on typed params and
// statuses, real kernel lines parse, and nothing but an ERR_DM_PARSE DmError
// ever escapes a parser.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DmError } from '../../lib/errors';
import * as T from '../../lib/targets/index';

const RUNS = 2000;
const uint = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const small = fc.integer({ min: 0, max: 2 ** 32 });
const dev = fc.oneof(fc.integer({ min: 0, max: 4095 }).map((n) => `/dev/loop${n}`), fc.tuple(fc.integer({ min: 0, max: 4095 }), fc.integer({ min: 0, max: 1 << 20 })).map(([a, b]) => `${a}:${b}`), fc.constantFrom('/dev/mapper/vg-data', '/dev/sdb1'));
const word = fc.stringMatching(/^[a-z_]{1,20}$/);

const params = {
  'thin-pool': fc.record({ metadataDevice: dev, dataDevice: dev, dataBlockSectors: uint, lowWaterMark: uint, features: fc.array(fc.oneof(fc.constantFrom('skip_block_zeroing', 'ignore_discard', 'no_discard_passdown', 'read_only', 'error_if_no_space'), word), { maxLength: 5 }) }),
  thin: fc.oneof(fc.record({ poolDevice: dev, deviceId: fc.integer({ min: 0, max: 2 ** 24 - 1 }) }), fc.record({ poolDevice: dev, deviceId: fc.integer({ min: 0, max: 2 ** 24 - 1 }), externalOrigin: dev })),
  linear: fc.record({ device: dev, offset: uint }),
  zero: fc.constant({}),
  error: fc.constant({}),
  snapshot: fc.record({ origin: dev, cow: dev, persistence: fc.constantFrom('P', 'N', 'PO'), chunkSectors: uint, features: fc.array(fc.constantFrom('discard_zeroes_cow', 'discard_passdown_origin'), { maxLength: 2 }) }),
  'snapshot-origin': fc.record({ origin: dev }),
  flakey: fc.record({ device: dev, offset: uint, upInterval: small, downInterval: small, features: fc.oneof(fc.constant([]), fc.constant(['drop_writes']), fc.constant(['error_writes']), fc.tuple(small, fc.constantFrom('r', 'w'), fc.integer({ min: 0, max: 255 }), small).map(([n, d, v, f]) => T.flakeyFeatures.corruptBioByte(n, d as 'r' | 'w', v, f))) }),
  delay: fc.oneof(
    fc.record({ read: fc.record({ device: dev, offset: uint, delayMs: small }) }),
    fc.record({ read: fc.record({ device: dev, offset: uint, delayMs: small }), write: fc.record({ device: dev, offset: uint, delayMs: small }) }),
    fc.record({ read: fc.record({ device: dev, offset: uint, delayMs: small }), write: fc.record({ device: dev, offset: uint, delayMs: small }), flush: fc.record({ device: dev, offset: uint, delayMs: small }) }),
  ),
} as const;

const statuses: Array<[T.TargetGrammar<unknown, unknown>, fc.Arbitrary<unknown>, (s: never) => string]> = [
  [T.thinPool as never, fc.oneof(
    fc.constant({ state: 'fail' }), fc.constant({ state: 'error' }),
    fc.record({ state: fc.constant('ok'), transactionId: uint, usedMetadataBlocks: uint, totalMetadataBlocks: uint, usedDataBlocks: uint, totalDataBlocks: uint, heldMetadataRoot: fc.option(uint, { nil: null }), mode: fc.constantFrom('rw', 'ro', 'out_of_data_space'), discardPassdown: fc.boolean(), errorIfNoSpace: fc.boolean(), needsCheck: fc.boolean(), metadataLowWatermark: uint }, { requiredKeys: ['state', 'transactionId', 'usedMetadataBlocks', 'totalMetadataBlocks', 'usedDataBlocks', 'totalDataBlocks', 'heldMetadataRoot', 'mode', 'discardPassdown', 'errorIfNoSpace', 'needsCheck'] }),
  ), T.formatThinPoolStatus as never],
  [T.thin as never, fc.oneof(fc.constant({ state: 'fail' }), fc.record({ state: fc.constant('ok'), mappedSectors: uint, highestMappedSector: fc.option(uint, { nil: null }) })), T.formatThinStatus as never],
  [T.snapshot as never, fc.oneof(fc.constantFrom({ state: 'invalid' }, { state: 'merge-failed' }, { state: 'overflow' }, { state: 'unknown' }), fc.record({ state: fc.constant('ok'), allocatedSectors: uint, totalSectors: uint, metadataSectors: uint })), T.formatSnapshotStatus as never],
  [T.delay as never, fc.record({ reads: small, writes: small, flushes: small }, { requiredKeys: ['reads', 'writes'] }), T.formatDelayStatus as never],
];

// fast-check may build null-prototype records; parsers return plain objects.
const plain = (v: unknown) => JSON.parse(JSON.stringify(v)) as unknown;

const isParseError = (e: unknown) => e instanceof DmError && e.code === 'ERR_DM_PARSE';

describe('round trips', () => {
  for (const [type, arb] of Object.entries(params)) {
    it(`${type}: parse(format(p)) equals p`, () => {
      const g = T.grammars[type]!;
      fc.assert(fc.property(arb as fc.Arbitrary<unknown>, (p) => {
        expect(g.parse(g.format(p))).toEqual(plain(p));
      }), { numRuns: RUNS });
    });
  }
  for (const [g, arb, format] of statuses) {
    it(`${g.type} status: parseStatus(format(s)) equals s`, () => {
      fc.assert(fc.property(arb, (s) => {
        expect(g.parseStatus(format(s as never))).toEqual(plain(s));
      }), { numRuns: RUNS });
    });
  }
});

describe('parsers never throw anything but ERR_DM_PARSE', () => {
  const mutate = (line: string) =>
    fc.oneof(
      fc.nat(line.length).map((n) => line.slice(0, n)),
      fc.string().map((x) => `${line} ${x}`),
      fc.constantFrom('99999999999999999999', '-1', '1.5', '', 'x', '/').chain((x) => fc.nat(12).map((i) => line.split(' ').map((w, j) => (j === i ? x : w)).join(' '))),
    );
  for (const [type, g] of Object.entries(T.grammars)) {
    it(`${type}`, () => {
      const valid = fc.sample(params[type as keyof typeof params] as fc.Arbitrary<unknown>, 1).map((p) => g.format(p))[0]!;
      for (const parse of [g.parse, g.parseStatus]) {
        fc.assert(
          fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 200 }), mutate(valid), mutate('0 141/4161600 0/1638400 - rw discard_passdown queue_if_no_space - 1024')), (text) => {
            try {
              parse(text);
            } catch (e) {
              return isParseError(e);
            }
            return true;
          }),
          { numRuns: RUNS },
        );
      }
    });
  }
});

describe('lines from real kernels and the documentation', () => {
  it('thin-pool status, with and without the metadata low watermark, and the failure forms', () => {
    expect(T.thinPool.parseStatus('0 141/4161600 0/1638400 - rw discard_passdown queue_if_no_space - 1024 ')).toEqual({
      state: 'ok', transactionId: 0, usedMetadataBlocks: 141, totalMetadataBlocks: 4161600, usedDataBlocks: 0, totalDataBlocks: 1638400,
      heldMetadataRoot: null, mode: 'rw', discardPassdown: true, errorIfNoSpace: false, needsCheck: false, metadataLowWatermark: 1024,
    });
    expect(T.thinPool.parseStatus('7 10/512 1638400/1638400 42 out_of_data_space no_discard_passdown error_if_no_space needs_check')).toMatchObject({
      transactionId: 7, heldMetadataRoot: 42, mode: 'out_of_data_space', discardPassdown: false, errorIfNoSpace: true, needsCheck: true,
    });
    expect(T.thinPool.parseStatus('Fail')).toEqual({ state: 'fail' });
    expect(T.thinPool.parseStatus('Error')).toEqual({ state: 'error' });
  });

  it('thin-pool tables keep their feature order', () => {
    expect(T.thinPool.parse('254:1 254:2 128 32768 2 skip_block_zeroing error_if_no_space').features).toEqual(['skip_block_zeroing', 'error_if_no_space']);
    expect(T.thinPool.parse('254:1 254:2 128 32768 2 error_if_no_space skip_block_zeroing').features).toEqual(['error_if_no_space', 'skip_block_zeroing']);
    expect(T.thinPool.parse('254:1 254:2 128 32768').features).toEqual([]);
  });

  it('thin status, snapshot tables and statuses, flakey with a zero count, delay with three classes', () => {
    expect(T.thin.parseStatus('0 -')).toEqual({ state: 'ok', mappedSectors: 0, highestMappedSector: null });
    expect(T.thin.parseStatus('16384 65535')).toEqual({ state: 'ok', mappedSectors: 16384, highestMappedSector: 65535 });
    expect(T.thin.parseStatus('Fail')).toEqual({ state: 'fail' });
    expect(T.snapshot.parse('7:0 7:1 p 16')).toMatchObject({ persistence: 'P', chunkSectors: 16, features: [] });
    expect(T.snapshot.parseStatus('Merge failed')).toEqual({ state: 'merge-failed' });
    expect(T.snapshot.parseStatus('128/2097152 16')).toEqual({ state: 'ok', allocatedSectors: 128, totalSectors: 2097152, metadataSectors: 16 });
    expect(T.flakey.parse('7:0 0 1 1 0')).toEqual({ device: '7:0', offset: 0, upInterval: 1, downInterval: 1, features: [] });
    expect(T.flakey.parse('7:0 0 1 1 5 corrupt_bio_byte 32 r 1 0').features).toEqual(['corrupt_bio_byte', '32', 'r', '1', '0']);
    expect(T.delay.parse('7:0 0 100 7:1 0 200 7:2 0 300')).toEqual({ read: { device: '7:0', offset: 0, delayMs: 100 }, write: { device: '7:1', offset: 0, delayMs: 200 }, flush: { device: '7:2', offset: 0, delayMs: 300 } });
    expect(T.delay.parseStatus('3 4 0')).toEqual({ reads: 3, writes: 4, flushes: 0 });
  });

  it('quotes the line in ERR_DM_PARSE messages', () => {
    expect(() => T.thinPool.parseStatus('0 141/x')).toThrow(expect.objectContaining({ code: 'ERR_DM_PARSE', message: expect.stringContaining('"0 141/x"') }));
    expect(() => T.thinPool.parse('254:1 254:2 128 32768 3 skip_block_zeroing')).toThrow(/count 3 but only 1/);
    expect(() => T.parseTarget({ start: 0, length: 1, type: 'mirror', params: '' })).toThrow(expect.objectContaining({ code: 'ERR_DM_PARSE' }));
  });

  it('refuses to format what is not one word or a count', () => {
    expect(() => T.linear.format({ device: 'a b', offset: 0 })).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_ARG' }));
    expect(() => T.thin.format({ poolDevice: '/dev/x', deviceId: -1 })).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_ARG' }));
    expect(() => T.snapshot.format({ origin: 'a', cow: 'b', persistence: 'X' as never, chunkSectors: 8, features: [] })).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_ARG' }));
    expect(() => T.delay.format({ read: { device: 'a', offset: 0, delayMs: 1 }, flush: { device: 'b', offset: 0, delayMs: 1 } })).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_ARG' }));
  });
});
