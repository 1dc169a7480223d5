import { constants } from 'node:os';
import { describe, expect, it } from 'vitest';
import { DmError, errnoName, errnoOf, fromNative } from '../../lib/errors';

const E = constants.errno;
const failure = (errno: number, op = 'DM_DEV_REMOVE', syscall = 'ioctl', detail?: string) =>
  Object.assign(new Error('native'), { errno, op, syscall, detail });

describe('DmError mapping', () => {
  it('names errnos by the names Linux defines, not their aliases (a retry on EAGAIN must see EAGAIN)', () => {
    expect(errnoName(E.EAGAIN)).toBe('EAGAIN');
    expect(errnoName(E.EOPNOTSUPP)).toBe('EOPNOTSUPP');
  });

  it('names errnos', () => {
    expect(errnoName(E.EBUSY)).toBe('EBUSY');
    expect(errnoName(E.ENXIO)).toBe('ENXIO');
    expect(errnoName(9999)).toBe('E9999');
  });

  it("names a Node.js system error by its errno (negative in Node's errors), or the fallback when it has none", async () => {
    const enoent = await import('node:fs/promises').then((fs) => fs.stat('/nonexistent/x').catch((e: NodeJS.ErrnoException) => e));
    expect(errnoOf(enoent as NodeJS.ErrnoException)).toBe('ENOENT');
    expect(errnoOf(Object.assign(new Error('x'), { errno: -15 }))).toBe('E15'); // ENOTBLK: no name in Node.js
    expect(errnoOf(new Error('no errno'))).toBe('EIO');
    expect(errnoOf(new Error('no errno'), 'ENXIO')).toBe('ENXIO');
  });

  it('carries code, errno, syscall, ioctl and device', () => {
    const e = fromNative(failure(E.EBUSY), 'pool');
    expect(e).toBeInstanceOf(DmError);
    expect(e).toBeInstanceOf(Error);
    expect(e).toMatchObject({ name: 'DmError', code: 'EBUSY', errno: E.EBUSY, syscall: 'ioctl', ioctl: 'DM_DEV_REMOVE', device: 'pool' });
    expect(e.message).toContain("DM_DEV_REMOVE on 'pool' failed: EBUSY");
  });

  it('says what to do about permissions, for device-mapper and for loop', () => {
    expect(fromNative(failure(E.EPERM), 'x').message).toContain('device-mapper needs CAP_SYS_ADMIN; run as root');
    expect(fromNative(failure(E.EACCES, 'LOOP_CONFIGURE'), '/dev/loop0').message).toContain('loop devices need CAP_SYS_ADMIN; run as root');
  });

  it('names the missing device on ENXIO', () => {
    expect(fromNative(failure(E.ENXIO, 'DM_DEV_STATUS'), 'ghost').message).toContain("no such device-mapper device 'ghost'");
  });

  it('says something about every errno a device-mapper or loop call commonly meets', () => {
    for (const name of [
      'EPERM',
      'EACCES',
      'ENXIO',
      'EBUSY',
      'EEXIST',
      'ENOTTY',
      'ENODEV',
      'ENOENT',
      'EINVAL',
      'ENOSPC',
      'ENOMEM',
      'EROFS',
      'EIO',
      'EAGAIN',
    ])
      for (const op of ['DM_TABLE_LOAD', 'LOOP_CONFIGURE'])
        expect(fromNative(failure(E[name as keyof typeof E], op), 'x').message, `${name} ${op}`).toMatch(new RegExp(`${name} — \\S`));
    expect(fromNative(failure(E.ENODEV, 'DM_TABLE_LOAD'), 'bad').message).toContain('does not exist or is not a block device');
  });

  it('lets a call site give its own advice', () => {
    expect(fromNative(failure(E.EBUSY), 'x', { EBUSY: 'pass { deferred: true }' }).message).toMatch(/EBUSY — pass \{ deferred: true \}$/);
  });

  it('turns reply decoding failures into ERR_DM_DECODE', () => {
    const e = fromNative(failure(E.EPROTO, 'DM_LIST_DEVICES', 'ioctl', 'name list next offset out of range'), undefined);
    expect(e).toMatchObject({ code: 'ERR_DM_DECODE', ioctl: 'DM_LIST_DEVICES' });
    expect(e.message).toContain('name list next offset out of range');
  });

  it('passes DmErrors through and wraps anything else', () => {
    const d = new DmError('x', { code: 'ERR_DM_TIMEOUT' });
    expect(fromNative(d, 'y')).toBe(d);
    expect(fromNative(new TypeError('bad'), 'y')).toMatchObject({ code: 'ERR_DM_DECODE', device: 'y' });
  });
});
