// direct-lvm options: Docker's defaults and rules, checked before any tool
// runs. PATH points nowhere meanwhile, so a tool started by mistake would fail
// with "not installed" (ERR_DM_TOOL) instead of ERR_DM_INVALID_ARG.
import { existsSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkDirectLvmOptions, directLvmFromSetOptions, lvmDmName } from '../../lib/direct-lvm';
import { DeviceSet, DIRECT_LVM_DEFAULTS, setUpDirectLvm } from '../../lib/index';

const path = process.env.PATH;
beforeEach(() => {
  process.env.PATH = '/nonexistent';
});
afterEach(() => {
  process.env.PATH = path;
});

const invalid = (call: () => unknown, field: string, why = '') => {
  const message = expect.stringMatching(new RegExp(`invalid ${field}:.*${why}`));
  expect(call).toThrow(expect.objectContaining({ name: 'DmError', code: 'ERR_DM_INVALID_ARG', message }));
};

describe('checkDirectLvmOptions', () => {
  it("fills in Docker's defaults", () => {
    expect(checkDirectLvmOptions({ device: '/dev/sdb' })).toEqual({
      device: '/dev/sdb',
      vg: 'docker',
      thinpPercent: 95,
      thinpMetaPercent: 1,
      autoextendThreshold: 80,
      autoextendPercent: 20,
      profileDir: '/etc/lvm/profile',
      lvmConfig: '',
    });
    expect(DIRECT_LVM_DEFAULTS).toMatchObject({ vg: 'docker', thinpPercent: 95, thinpMetaPercent: 1, autoextendThreshold: 80 });
  });

  it('takes given values', () => {
    const o = {
      device: '/dev/vdc',
      vg: 'store.1',
      thinpPercent: 60,
      thinpMetaPercent: 40,
      autoextendThreshold: 100,
      autoextendPercent: 100,
      profileDir: '/srv/p',
      lvmConfig: 'x',
    };
    expect(checkDirectLvmOptions(o)).toEqual(o);
    const least = { autoextendThreshold: 50, autoextendPercent: 1 };
    expect(checkDirectLvmOptions({ device: '/dev/vdc', ...least })).toMatchObject(least);
  });

  it('percents: whole, in range, both thinp percents or neither, adding up to at most 100', () => {
    const d = { device: '/dev/sdb' };
    invalid(() => checkDirectLvmOptions({ ...d, thinpPercent: 95 }), 'thinpMetaPercent', 'give both');
    invalid(() => checkDirectLvmOptions({ ...d, thinpMetaPercent: 1 }), 'thinpPercent', 'give both');
    invalid(() => checkDirectLvmOptions({ ...d, thinpPercent: 96, thinpMetaPercent: 5 }), 'thinpPercent', 'more than 100');
    invalid(() => checkDirectLvmOptions({ ...d, thinpPercent: 0, thinpMetaPercent: 1 }), 'thinpPercent', 'from 1 to 99');
    invalid(() => checkDirectLvmOptions({ ...d, thinpPercent: 100, thinpMetaPercent: 1 }), 'thinpPercent', 'from 1 to 99');
    invalid(() => checkDirectLvmOptions({ ...d, thinpPercent: 94.5, thinpMetaPercent: 1 }), 'thinpPercent', 'whole percent');
    invalid(() => checkDirectLvmOptions({ ...d, thinpPercent: '95' as never, thinpMetaPercent: 1 }), 'thinpPercent');
    invalid(() => checkDirectLvmOptions({ ...d, autoextendThreshold: 49 }), 'autoextendThreshold', 'from 50 to 100');
    invalid(() => checkDirectLvmOptions({ ...d, autoextendThreshold: 101 }), 'autoextendThreshold', 'from 50 to 100');
    invalid(() => checkDirectLvmOptions({ ...d, autoextendPercent: 0 }), 'autoextendPercent', 'from 1 to 100');
    invalid(() => checkDirectLvmOptions({ ...d, autoextendPercent: 101 }), 'autoextendPercent', 'from 1 to 100');
    expect(checkDirectLvmOptions({ ...d, thinpPercent: 99, thinpMetaPercent: 1 })).toMatchObject({ thinpPercent: 99, thinpMetaPercent: 1 });
  });

  it('device, volume group, profile directory, LVM configuration', () => {
    invalid(() => checkDirectLvmOptions({}), 'device');
    invalid(() => checkDirectLvmOptions({ device: '' }), 'device');
    invalid(() => checkDirectLvmOptions({ device: '/dev/sdb', vg: '-docker' }), 'vg', 'not an LVM volume group name');
    invalid(() => checkDirectLvmOptions({ device: '/dev/sdb', vg: 'a b' }), 'vg');
    invalid(() => checkDirectLvmOptions({ device: '/dev/sdb', vg: '..' }), 'vg');
    invalid(() => checkDirectLvmOptions({ device: '/dev/sdb', vg: 'a-'.repeat(50) }), 'vg', 'bytes'); // its dm name is too long
    invalid(() => checkDirectLvmOptions({ device: '/dev/sdb', profileDir: 'relative' }), 'profileDir', 'absolute');
    invalid(() => checkDirectLvmOptions({ device: '/dev/sdb', profileDir: '/a"b' }), 'profileDir', 'quotes');
    invalid(() => checkDirectLvmOptions({ device: '/dev/sdb', lvmConfig: 'a\0b' }), 'lvmConfig');
    invalid(() => checkDirectLvmOptions({ device: '/dev/sdb', thinp_percent: 95 }), 'options', "unknown option 'thinp_percent'");
  });

  it("LVM's device-mapper names double the dashes inside a name", () => {
    expect(lvmDmName('docker', 'thinpool')).toBe('docker-thinpool');
    expect(lvmDmName('my-vg', 'thin-pool')).toBe('my--vg-thin--pool');
  });
});

describe('setUpDirectLvm', () => {
  it('rejects bad options before running any tool', async () => {
    const refused = (why: string) => ({ code: 'ERR_DM_INVALID_ARG', message: expect.stringContaining(why) });
    await expect(setUpDirectLvm({ device: '/dev/null', thinpPercent: 99, thinpMetaPercent: 2 })).rejects.toMatchObject(
      refused('more than 100'),
    );
    await expect(setUpDirectLvm({ device: '/nonexistent/disk' })).rejects.toMatchObject(refused('no such device'));
    await expect(setUpDirectLvm({ device: '/dev/null' })).rejects.toMatchObject(refused('not a block device'));
  });
});

describe('DeviceSet direct-lvm options', () => {
  it('map onto setUpDirectLvm options under their DeviceSet names', () => {
    expect(directLvmFromSetOptions({})).toBeUndefined();
    expect(
      directLvmFromSetOptions({
        directLvmDevice: '/dev/sdb',
        directLvmVg: 'vg0',
        thinpPercent: 80,
        thinpMetaPercent: 2,
        thinpAutoextendThreshold: 90,
        thinpAutoextendPercent: 10,
        lvmProfileDir: '/srv/p',
        lvmConfig: 'activation { monitoring = 0 }',
      }),
    ).toEqual({
      device: '/dev/sdb',
      vg: 'vg0',
      thinpPercent: 80,
      thinpMetaPercent: 2,
      autoextendThreshold: 90,
      autoextendPercent: 10,
      profileDir: '/srv/p',
      lvmConfig: 'activation { monitoring = 0 }',
    });
    const sdb = { directLvmDevice: '/dev/sdb' };
    invalid(() => directLvmFromSetOptions({ ...sdb, thinpAutoextendThreshold: 20 }), 'thinpAutoextendThreshold', 'from 50');
    invalid(() => directLvmFromSetOptions({ ...sdb, thinpPercent: 90 }), 'thinpMetaPercent', 'give both thinpPercent and thinpMetaPercent');
    invalid(() => directLvmFromSetOptions({ thinpPercent: 90 }), 'thinpPercent', 'only with directLvmDevice');
    invalid(() => directLvmFromSetOptions({ directLvmDevice: '/dev/sdb', poolName: 'p' }), 'directLvmDevice', 'or poolName, not both');
    invalid(() => directLvmFromSetOptions({ directLvmDevice: '/dev/sdb', dataDevice: '/dev/a' }), 'directLvmDevice', 'or dataDevice');
    invalid(() => directLvmFromSetOptions({ directLvmDevice: '/dev/sdb', dataSize: '1G' }), 'directLvmDevice', 'or dataSize');
  });

  it('DeviceSet.open refuses them before touching its root', async () => {
    const root = `/tmp/devmapper-unit-${process.pid}-lvm`;
    await expect(DeviceSet.open({ root, directLvmDevice: '/dev/sdb', thinpPercent: 99, thinpMetaPercent: 5 })).rejects.toMatchObject({
      code: 'ERR_DM_INVALID_ARG',
      message: expect.stringContaining('thinpPercent'),
    });
    await expect(DeviceSet.open({ root, lvmProfileDir: '/p' })).rejects.toMatchObject({
      code: 'ERR_DM_INVALID_ARG',
      message: expect.stringContaining('lvmProfileDir'),
    });
    expect(existsSync(root)).toBe(false);
  });
});
