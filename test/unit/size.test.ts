import fc from 'fast-check';
import { expect, it } from 'vitest';
import { DmError } from '../../lib/errors';
import { parseSize } from '../../lib/size';

it('reads sizes as Docker did, in binary units', () => {
  const cases: Array<[string | number, number]> = [
    ['100G', 100 * 2 ** 30],
    ['100g', 100 * 2 ** 30],
    ['100GB', 100 * 2 ** 30],
    ['100GiB', 100 * 2 ** 30],
    ['2 GB', 2 * 2 ** 30],
    ['64K', 65536],
    ['64k', 65536],
    ['512M', 512 * 2 ** 20],
    ['1.5G', 1.5 * 2 ** 30],
    ['10T', 10 * 2 ** 40],
    ['4096', 4096],
    ['4096B', 4096],
    [0, 0],
    [123456789, 123456789],
  ];
  for (const [input, bytes] of cases) expect(parseSize(input, 'size')).toBe(bytes);
});

it('refuses what is not a size, naming the field', () => {
  for (const bad of ['', 'G', '100X', '-1G', '1e3', '10 G B', 'ten', '99999999999P', -1, 1.5, NaN, null, {}]) {
    expect(() => parseSize(bad, 'dataSize')).toThrow(
      expect.objectContaining({ code: 'ERR_DM_INVALID_ARG', message: expect.stringContaining('dataSize') }),
    );
  }
});

it('never throws anything but a DmError', () => {
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.anything()), (v) => {
      try {
        const n = parseSize(v, 'x');
        return Number.isSafeInteger(n) && n >= 0;
      } catch (e) {
        return e instanceof DmError && e.code === 'ERR_DM_INVALID_ARG';
      }
    }),
    { numRuns: 2000 },
  );
});
