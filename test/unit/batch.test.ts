// The batch runner's undo rules, against a fake kernel: each case is a
// failure the kernel tests have met (a half-made device when a table is
// refused, a snapshot whose origin went away, a delete refused after the
// device was removed).
import { afterEach, describe, expect, it } from 'vitest';
import type { DmCommand, DmIoctlReply, DmIoctlRequest } from '../../lib/binding';
import * as batch from '../../lib/batch';
import { DmError, type DmErrorCode } from '../../lib/errors';
import * as msg from '../../lib/targets/thin-pool-messages';
import type { DmName, ThinId } from '../../lib/validate';

/** Names and ids as the public surface hands them on, checked. */
const n = (s: string) => s as DmName;
const t = (x: number) => x as ThinId;

interface Call {
  command: DmCommand;
  request: DmIoctlRequest;
  trip: 'seq' | 'one';
}

/** A fake kernel: records every ioctl, fails the ones `fail` picks with an errno name. */
function fakeKernel(fail: (c: Call, index: number) => DmErrorCode | undefined = () => undefined) {
  const calls: Call[] = [];
  const reply = (c: Call, i: number): DmIoctlReply =>
    ({
      version: [4, 47, 0],
      flags: 0,
      eventNr: 0,
      openCount: 0,
      targetCount: 0,
      dev: { major: 253, minor: i },
      name: c.request.name ?? '',
      uuid: '',
      bufferSize: 0,
      growths: 0,
      ...(c.command === 'DM_TABLE_STATUS' ? { targets: [{ start: 0, length: 8, type: 'zero', params: '' }] } : {}),
    }) as DmIoctlReply;
  const error = (code: DmErrorCode, c: Call) => new DmError(`${c.command} failed: ${code}`, { code, ioctl: c.command });
  batch.setBatchCalls({
    async seq(steps) {
      const replies: DmIoctlReply[] = [];
      for (const [i, s] of steps.entries()) {
        const c: Call = { command: s.command, request: s.request, trip: 'seq' };
        calls.push(c);
        const code = fail(c, calls.length - 1);
        if (code) return { failed: { step: i, error: error(code, c), replies } };
        replies.push(reply(c, i));
      }
      return { replies };
    },
    async one(command, request) {
      const c: Call = { command, request, trip: 'one' };
      calls.push(c);
      const code = fail(c, calls.length - 1);
      if (code) throw error(code, c);
      return reply(c, 0);
    },
  });
  const words = () =>
    calls.map(
      (c) => `${c.trip} ${c.command}${c.request.message ? ` ${c.request.message}` : ''}${c.request.name ? ` ${c.request.name}` : ''}`,
    );
  return { calls, words };
}

afterEach(() => batch.setBatchCalls(undefined));

const table = [{ start: 0, length: 8, type: 'zero', params: '' }];

describe('runBatch', () => {
  it('a table the kernel refuses: the half-made device is removed, the load error thrown', async () => {
    const k = fakeKernel((c) => (c.command === 'DM_TABLE_LOAD' ? 'EINVAL' : undefined));
    await expect(batch.runBatch(batch.createDevice(n('d'), { table }), 'd')).rejects.toMatchObject({
      code: 'EINVAL',
      ioctl: 'DM_TABLE_LOAD',
    });
    expect(k.words()).toEqual(['seq DM_DEV_CREATE d', 'seq DM_TABLE_LOAD d', 'one DM_DEV_REMOVE d']);
  });

  it('a failed first step undoes nothing', async () => {
    const k = fakeKernel((c) => (c.command === 'DM_DEV_CREATE' ? 'EBUSY' : undefined));
    const steps = batch.createDevice(n('d'), { table });
    await expect(batch.runBatch(steps, 'd')).rejects.toMatchObject({ code: 'EBUSY' });
    expect(k.words()).toEqual(['seq DM_DEV_CREATE d']);
    expect(steps[0]!.hints?.EBUSY).toContain('already exists'); // control.ts adds it to the kernel's error
  });

  it('a thin device whose resume fails: device removed, then the thin id deleted (newest first)', async () => {
    const k = fakeKernel((c) => (c.command === 'DM_DEV_SUSPEND' ? 'EINVAL' : undefined));
    const steps = [
      batch.message(n('pool'), msg.createThin('pool', t(7)), msg.deleteThin('pool', t(7))),
      ...batch.createDevice(n('t'), { table }),
    ];
    await expect(batch.runBatch(steps, 't')).rejects.toMatchObject({ code: 'EINVAL' });
    expect(k.words()).toEqual([
      'seq DM_TARGET_MSG create_thin 7 pool',
      'seq DM_DEV_CREATE t',
      'seq DM_TABLE_LOAD t',
      'seq DM_DEV_SUSPEND t',
      'one DM_DEV_REMOVE t',
      'one DM_TARGET_MSG delete 7 pool',
    ]);
  });

  it('a snapshot whose origin went away: the origins suspended before it are resumed, nothing else', async () => {
    const k = fakeKernel((c) => (c.command === 'DM_DEV_SUSPEND' && c.request.name === 'gone' ? 'ENXIO' : undefined));
    const steps = [
      batch.suspend(n('a')),
      batch.suspend(n('gone')),
      batch.message(n('pool'), msg.createSnap('pool', t(8), t(7)), msg.deleteThin('pool', t(8))),
    ];
    const o = await batch.runSteps(steps, 'pool');
    expect(o.ok).toBe(false);
    if (o.ok) return;
    expect(o.failed).toMatchObject({ index: 1, step: steps[1], error: { code: 'ENXIO' } });
    expect(o.replies).toHaveLength(1);
    await o.undo();
    expect(k.words()).toEqual(['seq DM_DEV_SUSPEND a', 'seq DM_DEV_SUSPEND gone', 'one DM_DEV_SUSPEND a']);
  });

  it('a batch that succeeded is undone whole on request (a snapshot made on a wrong guess)', async () => {
    const k = fakeKernel();
    const steps = [
      batch.readTable({ dev: { major: 253, minor: 1 } }),
      batch.message(n('pool'), msg.createSnap('pool', t(9), t(7)), msg.deleteThin('pool', t(9))),
      ...batch.createDevice(n('s'), { table }),
    ];
    const o = await batch.runSteps(steps, 's');
    expect(o.ok).toBe(true);
    await o.undo();
    expect(k.words().slice(steps.length)).toEqual(['one DM_DEV_REMOVE s', 'one DM_TARGET_MSG delete 9 pool']);
  });

  it('a delete refused after the remove: the device is put back with the table read first', async () => {
    const k = fakeKernel((c) => (c.command === 'DM_TARGET_MSG' && c.trip === 'seq' ? 'ENODATA' : undefined));
    const read = batch.readTable({ name: n('t') });
    const steps = [read, batch.remove(n('t'), { restore: read }), batch.message(n('pool'), msg.deleteThin('pool', t(5)))];
    const o = await batch.runSteps(steps, 't');
    expect(o.ok ? undefined : o.failed.error.code).toBe('ENODATA');
    if (!o.ok) expect(o.failed.error.message).toBe('DM_TARGET_MSG failed: ENODATA');
    await o.undo().catch(() => undefined); // the put-back makes a node: not in this fake's reach
    expect(k.words().slice(3, 6)).toEqual(['seq DM_DEV_CREATE t', 'seq DM_TABLE_LOAD t', 'seq DM_DEV_SUSPEND t']);
    expect(k.calls[4]!.request.targets).toEqual(table);
  });

  it('undo failures are ignored and the original error stands', async () => {
    const k = fakeKernel((c) => (c.command === 'DM_TABLE_LOAD' ? 'EINVAL' : c.trip === 'one' ? 'EIO' : undefined));
    const steps = [
      batch.message(n('pool'), msg.createThin('pool', t(1)), msg.deleteThin('pool', t(1))),
      ...batch.createDevice(n('d'), { table }),
    ];
    await expect(batch.runBatch(steps, 'd')).rejects.toMatchObject({ code: 'EINVAL' });
    expect(k.words().filter((w) => w.startsWith('one'))).toEqual(['one DM_DEV_REMOVE d', 'one DM_TARGET_MSG delete 1 pool']);
  });

  it('builders validate before any ioctl', () => {
    const k = fakeKernel();
    expect(() => batch.createDevice(n('a/b'), { table })).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_ARG' }));
    expect(() => batch.createDevice(n('a'), { table: [] })).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_ARG' }));
    expect(() => batch.createDevice(n('a'), { table, readOnly: 'yes' as never })).toThrow(
      expect.objectContaining({ code: 'ERR_DM_INVALID_ARG' }),
    );
    expect(k.calls).toEqual([]);
  });
});
