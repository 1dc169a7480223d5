import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DmError } from '../../lib/errors';
import { checkLine, checkName, checkOptions, checkTargetType, checkUint, checkUuid } from '../../lib/validate';

const rejects = (f: () => unknown, field: string) => {
  let caught: unknown;
  try {
    f();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(DmError);
  expect(caught).toMatchObject({ code: 'ERR_DM_INVALID_ARG', message: expect.stringContaining(field) });
};

describe('device names', () => {
  it('accepts what Docker and LVM use', () => {
    for (const n of ['docker-8:1-1234-pool', 'vg0-lv_data', 'a', 'x'.repeat(127), 'name.with:colons@and=signs+#'])
      expect(checkName(n)).toBe(n);
  });

  it('rejects empty, too long, slashes, dot names, white space and control characters', () => {
    for (const bad of ['', 'x'.repeat(128), 'a/b', '.', '..', 'control', 'a b', 'tab\there', 'nl\n', 'nul\0', 'é', '\x7f'])
      rejects(() => checkName(bad), 'name');
    rejects(() => checkName(42), 'name');
    rejects(() => checkName(undefined, 'newName'), 'newName');
  });

  it('never throws anything but an ERR_DM_INVALID_ARG DmError, for any string', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (s) => {
        try {
          checkName(s);
          return Buffer.byteLength(s) <= 127 && /^[\x21-\x7e]+$/.test(s) && !s.includes('/') && s !== '.' && s !== '..' && s !== 'control';
        } catch (e) {
          return e instanceof DmError && e.code === 'ERR_DM_INVALID_ARG';
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('uuids, numbers, types, lines, options', () => {
  it('bounds uuids at 128 bytes', () => {
    expect(checkUuid('LVM-' + 'a'.repeat(124))).toHaveLength(128);
    rejects(() => checkUuid('a'.repeat(129)), 'uuid');
    rejects(() => checkUuid(''), 'uuid');
  });

  it('takes only safe non-negative integers', () => {
    expect(checkUint(0, 'x')).toBe(0);
    expect(checkUint(Number.MAX_SAFE_INTEGER, 'x')).toBe(Number.MAX_SAFE_INTEGER);
    for (const bad of [-1, 1.5, NaN, Infinity, 2 ** 53, '1', null, 1n]) rejects(() => checkUint(bad, 'start'), 'start');
    rejects(() => checkUint(5, 'len', { min: 6 }), 'len');
    rejects(() => checkUint(7, 'len', { max: 6 }), 'len');
  });

  it('bounds target types at 15 bytes of [A-Za-z0-9_-]', () => {
    expect(checkTargetType('thin-pool')).toBe('thin-pool');
    expect(checkTargetType('snapshot-origin')).toBe('snapshot-origin');
    for (const bad of ['', 'x'.repeat(16), 'a b', 'a;b']) rejects(() => checkTargetType(bad), 'type');
  });

  it('refuses NUL and line breaks in table lines and messages', () => {
    expect(checkLine('/dev/loop0 0', 'params')).toBe('/dev/loop0 0');
    for (const bad of ['a\nb', 'a\0', 'a\rb']) rejects(() => checkLine(bad, 'params'), 'params');
    rejects(() => checkLine('', 'message', { allowEmpty: false }), 'message');
  });

  it('names unknown option keys', () => {
    expect(checkOptions(undefined, 'options', ['a'])).toEqual({});
    rejects(() => checkOptions({ defered: true }, 'options', ['deferred']), "unknown option 'defered'");
    rejects(() => checkOptions([], 'options', []), 'options');
  });
});
