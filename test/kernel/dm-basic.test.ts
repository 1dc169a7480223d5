import { existsSync, statSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dm, DmError, loop } from '../../lib/index';
import { hostDeviceMapper } from '../../scripts/host-kernel.mjs';
import { RUN, sparseFile, sweep } from './helpers';

const zero = (length: number): dm.Target[] => [{ start: 0, length, type: 'zero', params: '' }];

beforeAll(sweep);
afterAll(sweep);

describe('driver and targets', () => {
  it('reports the driver version', async () => {
    const v = await dm.version();
    expect(v.major).toBe(4);
    expect(v.minor).toBeGreaterThanOrEqual(37); // arm-poll exists since 4.37
  });

  it('is what npm test and npm run demo look for in a kernel (scripts/host-kernel.mjs)', () => {
    expect(hostDeviceMapper()).toMatchObject({ ok: true, why: expect.stringContaining('/proc/misc lists it') });
  });

  it('lists loaded targets and loads one on demand', async () => {
    const names = (await dm.targets()).map((t) => t.name);
    expect(names).toEqual(expect.arrayContaining(['linear', 'zero', 'error', 'thin-pool', 'thin']));
    const [major] = await dm.targetVersion('thin-pool');
    expect(major).toBe(1);
    await expect(dm.targetVersion('no-such-target')).rejects.toMatchObject({ code: 'EINVAL', ioctl: 'DM_GET_TARGET_VERSION' });
  });
});

describe('create, info, table, status', () => {
  it('creates with a table: live, with a /dev/mapper node, and listed with uuid and event number', async () => {
    const name = `${RUN}zero`;
    const dev = await dm.create(name, { uuid: `${RUN}uuid`, table: zero(2048) });
    expect(dev).toMatchObject({
      name,
      uuid: `${RUN}uuid`,
      activeTable: true,
      inactiveTable: false,
      suspended: false,
      targetCount: 1,
      path: `/dev/mapper/${name}`,
    });
    const st = statSync(dev.path);
    expect(st.isBlockDevice()).toBe(true);
    expect(await dm.table(name)).toEqual(zero(2048));
    expect(await dm.status(name)).toEqual(zero(2048));
    const listed = (await dm.list()).find((d) => d.name === name);
    expect(listed).toEqual({ name, uuid: `${RUN}uuid`, major: dev.major, minor: dev.minor, eventNr: 0 });
    expect(await dm.info({ uuid: `${RUN}uuid` })).toMatchObject({ name });
    expect(await dm.info({ major: dev.major, minor: dev.minor })).toMatchObject({ name });
    await dm.remove(name);
    expect(existsSync(dev.path)).toBe(false);
    await expect(dm.info(name)).rejects.toMatchObject({
      code: 'ENXIO',
      device: name,
      message: expect.stringContaining(`no such device-mapper device '${name}'`),
    });
  });

  it('creates without a table: present, no live table, read-only table load honoured', async () => {
    const name = `${RUN}bare`;
    const dev = await dm.create(name);
    expect(dev).toMatchObject({ activeTable: false, inactiveTable: false, uuid: '' });
    await dm.load(name, zero(8), { readOnly: true });
    expect(await dm.info(name)).toMatchObject({ activeTable: false, inactiveTable: true });
    expect(await dm.table(name, { inactive: true })).toEqual(zero(8));
    await dm.clear(name);
    expect((await dm.info(name)).inactiveTable).toBe(false);
    await dm.load(name, zero(8), { readOnly: true });
    await dm.resume(name);
    expect(await dm.info(name)).toMatchObject({ activeTable: true, readOnly: true });
    await dm.remove(name);
  });

  it('refuses a duplicate name (the kernel says EBUSY) and leaves the first device alone', async () => {
    const name = `${RUN}dup`;
    await dm.create(name, { table: zero(8) });
    await expect(dm.create(name, { table: zero(8) })).rejects.toMatchObject({
      code: 'EBUSY',
      ioctl: 'DM_DEV_CREATE',
      message: expect.stringContaining('already exists'),
    });
    expect((await dm.info(name)).activeTable).toBe(true);
    await dm.remove(name);
  });

  it('rolls back a create whose table the kernel rejects', async () => {
    const name = `${RUN}rollback`;
    const err = await dm
      .create(name, { table: [{ start: 0, length: 8, type: 'linear', params: '/dev/nonexistent 0' }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DmError);
    expect(err).toMatchObject({ ioctl: 'DM_TABLE_LOAD', device: name });
    expect((await dm.list()).some((d) => d.name === name)).toBe(false);
    expect(existsSync(`/dev/mapper/${name}`)).toBe(false);
  });

  it('reports the devices a table depends on', async () => {
    const l = await loop.attach(await sparseFile('deps', 1 << 20));
    const name = `${RUN}linear`;
    await dm.create(name, { table: [{ start: 0, length: 2048, type: 'linear', params: `${l.path} 0` }] });
    expect(await dm.deps(name)).toEqual([{ major: l.major, minor: l.minor }]);
    expect(await dm.table(name)).toEqual([{ start: 0, length: 2048, type: 'linear', params: `${l.major}:${l.minor} 0` }]);
    await dm.remove(name);
    await loop.detach(l.path);
  });

  it('loads a multi-target table and reads every target back', async () => {
    const name = `${RUN}multi`;
    const table: dm.Target[] = [
      { start: 0, length: 100, type: 'zero', params: '' },
      { start: 100, length: 50, type: 'error', params: '' },
      { start: 150, length: 1000, type: 'zero', params: '' },
    ];
    await dm.create(name, { table });
    expect(await dm.table(name)).toEqual(table);
    await dm.remove(name);
  });
});

describe('rename, uuid, geometry', () => {
  it('renames the device and its node', async () => {
    const a = `${RUN}old`;
    const b = `${RUN}new`;
    const dev = await dm.create(a, { table: zero(8) });
    await dm.rename(a, b);
    expect(await dm.info(b)).toMatchObject({ major: dev.major, minor: dev.minor });
    expect(existsSync(`/dev/mapper/${a}`)).toBe(false);
    expect(statSync(`/dev/mapper/${b}`).isBlockDevice()).toBe(true);
    await expect(dm.info(a)).rejects.toMatchObject({ code: 'ENXIO' });
    await dm.remove(b);
  });

  it('sets a uuid once; the kernel refuses to change it', async () => {
    const name = `${RUN}setuuid`;
    await dm.create(name, { table: zero(8) });
    await dm.setUuid(name, `${RUN}U1`);
    expect((await dm.info(name)).uuid).toBe(`${RUN}U1`);
    await expect(dm.setUuid(name, `${RUN}U2`)).rejects.toMatchObject({
      code: 'EINVAL',
      message: expect.stringContaining('already has a uuid'),
    });
    await dm.remove(name);
  });

  it('sets geometry; the kernel checks it against the device', async () => {
    const name = `${RUN}geo`;
    await dm.create(name, { table: zero(1024 * 16 * 63) });
    await dm.setGeometry(name, { cylinders: 1024, heads: 16, sectors: 63, start: 0 });
    await expect(dm.setGeometry(name, { cylinders: 1, heads: 1, sectors: 1, start: 10 })).rejects.toMatchObject({
      code: 'EINVAL',
      ioctl: 'DM_DEV_SET_GEOMETRY',
    });
    await dm.remove(name);
  });
});

describe('bad input never reaches the kernel', () => {
  it('rejects bad names, uuids and tables with ERR_DM_INVALID_ARG and leaves nothing behind', async () => {
    const before = (await dm.list()).length;
    const cases: Array<[() => Promise<unknown>, string]> = [
      [() => dm.create(''), 'name'],
      [() => dm.create('a/b'), 'name'],
      [() => dm.create('x'.repeat(128)), 'name'],
      [() => dm.create(`${RUN}ok`, { uuid: 'u'.repeat(129) }), 'options.uuid'],
      [() => dm.create(`${RUN}ok`, { table: [] }), 'options.table'],
      [() => dm.create(`${RUN}ok`, { table: [{ start: 0, length: 8, type: 'zero', params: 'a\nb' }] }), 'options.table[0].params'],
      [() => dm.create(`${RUN}ok`, { table: [{ start: 8, length: 8, type: 'zero', params: '' }] }), 'options.table[0].start'],
    ];
    for (const [call, field] of cases) {
      await expect(call()).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARG', message: expect.stringContaining(field) });
    }
    expect((await dm.list()).length).toBe(before);
  });
});
