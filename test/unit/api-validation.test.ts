// Bad input to the public API is refused with ERR_DM_INVALID_ARG before any
// ioctl: the addon's entry points are spied on and must never be reached.
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { native } from '../../lib/binding';
import { dm, DmError, loop } from '../../lib/index';

const spies = () => ({
  dm: vi.spyOn(native, 'dmIoctl'),
  loopIoctl: vi.spyOn(native, 'loopIoctl'),
  attach: vi.spyOn(native, 'loopAttach'),
  pathIoctl: vi.spyOn(native, 'loopPathIoctl'),
  pathStatus: vi.spyOn(native, 'loopPathStatus'),
  mknod: vi.spyOn(native, 'mknod'),
  mknodSync: vi.spyOn(native, 'mknodSync'),
  seq: vi.spyOn(native, 'dmIoctlSeq'),
});

afterEach(() => vi.restoreAllMocks());

const invalid = async (call: () => Promise<unknown>, field: string) => {
  const s = spies();
  await expect(call()).rejects.toMatchObject({ name: 'DmError', code: 'ERR_DM_INVALID_ARG', message: expect.stringContaining(field) });
  expect(s.dm).not.toHaveBeenCalled();
  expect(s.loopIoctl).not.toHaveBeenCalled();
  expect(s.attach).not.toHaveBeenCalled();
  expect(s.pathIoctl).not.toHaveBeenCalled();
  expect(s.pathStatus).not.toHaveBeenCalled();
  expect(s.mknod).not.toHaveBeenCalled();
  expect(s.mknodSync).not.toHaveBeenCalled();
  expect(s.seq).not.toHaveBeenCalled();
};

const zero = [{ start: 0, length: 8, type: 'zero', params: '' }];

describe('dm: bad input', () => {
  it('names and device references', async () => {
    await invalid(() => dm.info(''), 'device');
    await invalid(() => dm.info('a/b'), 'device');
    await invalid(() => dm.info({ uuid: '' }), 'device.uuid');
    await invalid(() => dm.info({ major: -1, minor: 0 }), 'device.major');
    await invalid(() => dm.info(7 as never), 'device');
    await invalid(() => dm.rename('a', '..'), 'newName');
    await invalid(() => dm.setUuid('a', 'x'.repeat(200)), 'uuid');
    await invalid(() => dm.mknodes('a/b'), 'name');
    await invalid(() => dm.mknodes(''), 'name');
    await invalid(() => dm.remove('a', { retry: { attempts: 0 } }), 'options.retry.attempts');
    await invalid(() => dm.remove('a', { deferred: 'yes' as never }), 'options.deferred');
    await invalid(() => dm.remove('a', { force: 1 as never }), 'options.force');
    await invalid(() => dm.remove('a', { force: true, retry: { delayMs: -1 } }), 'options.retry.delayMs');
  });

  it('discard ranges', async () => {
    await invalid(() => dm.discard('a', { offset: 100 }), 'options.offset');
    await invalid(() => dm.discard('a', { offset: -512 }), 'options.offset');
    await invalid(() => dm.discard('a', { length: 0 }), 'options.length');
    await invalid(() => dm.discard('a', { length: 513 }), 'options.length');
    await invalid(() => dm.discard('a', { size: 512 } as never), 'size');
    await invalid(() => dm.discard('', {}), 'device');
  });

  it('tables', async () => {
    await invalid(() => dm.create('a', { table: [] }), 'options.table');
    await invalid(() => dm.load('a', [{ start: 0, length: 0, type: 'zero', params: '' }]), 'table[0].length');
    await invalid(() => dm.load('a', [{ start: 0, length: 8, type: 'a-very-long-target-type', params: '' }]), 'table[0].type');
    await invalid(() => dm.load('a', [...zero, { start: 9, length: 8, type: 'zero', params: '' }]), 'table[1].start');
    await invalid(() => dm.load('a', [{ start: 0, length: 2 ** 53, type: 'zero', params: '' }]), 'table[0].length');
    await invalid(() => dm.load('a', [{ start: 0, length: 8, type: 'zero', params: 'x\0y' }]), 'table[0].params');
    await invalid(() => dm.create('a', { tabel: zero } as never), "unknown option 'tabel'");
  });

  it('messages, waits, geometry', async () => {
    await invalid(() => dm.message('a', ''), 'message');
    await invalid(() => dm.message('a', 'x\ny'), 'message');
    await invalid(() => dm.message('a', 'x', { sector: -1 }), 'options.sector');
    await invalid(() => dm.wait('a', -1), 'eventNr');
    await invalid(() => dm.wait('a', 2 ** 32), 'eventNr');
    await invalid(() => dm.wait('a', 0, { method: 'sleep' as never }), 'options.method');
    await invalid(() => dm.wait('a', 0, { signal: {} as never }), 'options.signal');
    await invalid(() => dm.wait('a', 0, { method: 'ioctl', signal: new AbortController().signal }), 'options.signal');
    await invalid(() => dm.setGeometry('a', { cylinders: 70000, heads: 1, sectors: 1, start: 0 }), 'geometry.cylinders');
    await invalid(() => dm.targetVersion('bad type'), 'type');
  });

  it('arbitrary values for every argument give a DmError, never a crash or an ioctl with bad input', async () => {
    const s = spies();
    s.dm.mockRejectedValue(Object.assign(new Error('x'), { errno: 6, op: 'DM_DEV_STATUS', syscall: 'ioctl' }));
    await fc.assert(
      fc.asyncProperty(fc.anything(), fc.anything(), async (a, b) => {
        for (const call of [
          () => dm.info(a as never),
          () => dm.load(a as never, b as never),
          () => dm.create(a as never, b as never),
          () => dm.message(a as never, b as never),
          () => dm.remove(a as never, b as never),
        ]) {
          const err = await call().then(
            () => undefined,
            (e: unknown) => e,
          );
          if (!(err instanceof DmError)) return false;
        }
        return true;
      }),
      { numRuns: 300 },
    );
  });
});

describe('loop: bad input', () => {
  it('files, options and device references', async () => {
    await invalid(() => loop.attach(''), 'file');
    await invalid(() => loop.attach('/x', { offset: -512 }), 'options.offset');
    await invalid(() => loop.attach('/x', { sizeLimit: 1.5 }), 'options.sizeLimit');
    await invalid(() => loop.attach('/x', { blockSize: 3000 }), 'options.blockSize');
    await invalid(() => loop.attach('/x', { readonly: true } as never), "unknown option 'readonly'");
    await invalid(() => loop.attach('/x', { autoclear: 1 as never }), 'options.autoclear');
    await invalid(() => loop.detach('/dev/sda'), 'loop device');
    await invalid(() => loop.info(-1), 'loop device');
    await invalid(() => loop.setDirectIo(0, 'on' as never), 'on');
  });
});
