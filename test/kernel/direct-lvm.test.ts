// Docker's direct-lvm set-up on a real kernel with LVM's own tools: a sparse
// file on a loop device is the "disk". What setUpDirectLvm made is checked
// against LVM's view (lvs, lvmconfig) and device-mapper's (the pool's table),
// then a DeviceSet uses the pool, across a deactivation of the volume group.
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lvmDmName } from '../../lib/direct-lvm';
import { DeviceSet, dm, DmError, loop, setUpDirectLvm } from '../../lib/index';
import { RUN, SCRATCH, sparseFile, sweep } from './helpers';

const exec = promisify(execFile);
const GiB = 1 << 30;
const VG = `${RUN}vg`;
const PROFILES = `${SCRATCH}/lvm-profile`;
// No dmeventd in the VM (it would leave its fifos in the host's /run), no
// metadata backups in the host's /etc/lvm, no hints file in its /run/lvm.
const LVM_CONFIG = 'activation { monitoring = 0 } backup { backup = 0 archive = 0 } devices { hints = "none" }';
// The test's own LVM calls: the same settings, no udev (as the library does without one).
const NO_UDEV = 'activation { udev_sync = 0 udev_rules = 0 } devices { obtain_device_list_from_udev = 0 }';
const TEST_CONFIG = `${NO_UDEV} config { profile_dir = "${PROFILES}" } ${LVM_CONFIG}`;
const ENV = { ...process.env, DM_DISABLE_UDEV: '1', LVM_SUPPRESS_FD_WARNINGS: '1' };

async function lvm(command: string, ...args: string[]): Promise<string> {
  return (await exec('lvm', [command, '--config', TEST_CONFIG, ...args], { env: ENV })).stdout;
}

async function report(command: 'pvs' | 'lvs' | 'vgs', fields: string, ...args: string[]): Promise<Array<Record<string, string>>> {
  const out = await lvm(command, '--reportformat', 'json', '--units', 'b', '--nosuffix', '-o', fields, ...args);
  const key = { pvs: 'pv', lvs: 'lv', vgs: 'vg' }[command];
  return (JSON.parse(out) as { report: Array<Record<string, Array<Record<string, string>>>> }).report.flatMap((r) => r[key] ?? []);
}

/** blkid -p's exit status: 2 when the device holds no signature at all. */
const blkidStatus = (device: string) =>
  exec('blkid', ['-p', device]).then(
    () => 0,
    (e: { code: number }) => e.code,
  );

const options = (device: string) => ({
  device,
  vg: VG,
  thinpPercent: 90,
  thinpMetaPercent: 2,
  autoextendThreshold: 70,
  autoextendPercent: 30,
  profileDir: PROFILES,
  lvmConfig: LVM_CONFIG,
});

let disk: loop.LoopDevice; // the direct-lvm device
let formatted: loop.LoopDevice; // holds ext4
let spare: loop.LoopDevice; // empty, for the undo check
let vgMade = false;
let vg2Made = false;

beforeAll(async () => {
  await sweep();
  disk = await loop.attach(await sparseFile('lvm-disk', GiB));
  formatted = await loop.attach(await sparseFile('lvm-ext4', 64 << 20));
  spare = await loop.attach(await sparseFile('lvm-spare', 256 << 20));
  await exec('mkfs.ext4', ['-q', '-F', formatted.path]);
});

afterAll(async () => {
  if (vgMade) {
    await lvm('vgremove', '-f', VG).catch(() => undefined);
    await lvm('pvremove', '-y', disk.path).catch(() => undefined);
  }
  if (vg2Made) {
    await lvm('vgremove', '-f', `${RUN}vg2`).catch(() => undefined);
    await lvm('pvremove', '-y', spare.path).catch(() => undefined);
  }
  await sweep();
});

describe('direct-lvm set-up', () => {
  it('rejects bad options before running anything', async () => {
    const bad = [
      { thinpPercent: 96, thinpMetaPercent: 5 },
      { thinpPercent: 95 },
      { thinpPercent: 0, thinpMetaPercent: 1 },
      { autoextendThreshold: 40 },
      { autoextendPercent: 101 },
      { vg: '-x' },
    ];
    for (const b of bad) {
      await expect(setUpDirectLvm({ device: spare.path, ...b })).rejects.toMatchObject({ name: 'DmError', code: 'ERR_DM_INVALID_ARG' });
    }
    expect((await report('pvs', 'pv_name')).map((p) => p.pv_name)).not.toContain(spare.path);
    expect(await blkidStatus(spare.path)).toBe(2);
  });

  it('refuses a device holding a filesystem, and makes nothing', async () => {
    const e = await setUpDirectLvm(options(formatted.path)).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DmError);
    expect(e).toMatchObject({ code: 'ERR_DM_INVALID_ARG', message: expect.stringMatching(/holds a filesystem of type ext4/) });
    expect((await report('pvs', 'pv_name')).map((p) => p.pv_name)).not.toContain(formatted.path);
    expect((await report('vgs', 'vg_name')).map((v) => v.vg_name)).not.toContain(VG);
    expect((await exec('blkid', ['-p', '-o', 'value', '-s', 'TYPE', formatted.path])).stdout.trim()).toBe('ext4');
  });

  it('makes the PV, VG, thin pool and autoextend profile, as LVM and device-mapper see them', async () => {
    const made = await setUpDirectLvm(options(disk.path));
    vgMade = true;
    expect(made).toMatchObject({ vg: VG, lv: 'thinpool', device: disk.path, profile: `${VG}-thinpool`, created: true });
    expect(made.poolName).toBe(lvmDmName(VG, 'thinpool'));

    expect(await report('pvs', 'pv_name,vg_name', disk.path)).toEqual([{ pv_name: disk.path, vg_name: VG }]);
    const [vg] = await report('vgs', 'vg_size,vg_extent_size', VG);
    const vgSize = Number(vg!.vg_size);
    const extent = Number(vg!.vg_extent_size);
    const fields = 'lv_name,segtype,lv_size,lv_metadata_size,lv_profile,lv_active,data_lv,metadata_lv,lv_dm_path';
    const lvs = await report('lvs', fields, '-a', VG);
    const pool = lvs.find((l) => l.lv_name === 'thinpool')!;
    expect(pool).toMatchObject({ segtype: 'thin-pool', lv_profile: made.profile, lv_active: 'active' });
    expect(pool).toMatchObject({ data_lv: '[thinpool_tdata]', metadata_lv: '[thinpool_tmeta]' });
    expect(pool.lv_dm_path).toBe(`/dev/mapper/${made.poolName}`);
    // 90% and 2% of the volume group, to LVM's extent rounding.
    expect(Math.abs(Number(pool.lv_size) - 0.9 * vgSize)).toBeLessThanOrEqual(extent);
    expect(Math.abs(Number(pool.lv_metadata_size) - 0.02 * vgSize)).toBeLessThanOrEqual(extent);
    expect(made.dataSize).toBe(Number(pool.lv_size));
    expect(made.metadataSize).toBe(Number(pool.lv_metadata_size));
    expect(lvs.find((l) => l.lv_name === '[thinpool_tmeta]')).toMatchObject({ lv_size: pool.lv_metadata_size });

    // The profile LVM applies to the pool holds the autoextend settings.
    const keys = ['activation/thin_pool_autoextend_threshold', 'activation/thin_pool_autoextend_percent'];
    const applied = await lvm('lvmconfig', '--mergedconfig', '--metadataprofile', made.profile, ...keys);
    expect(applied.trim().split('\n')).toEqual(['thin_pool_autoextend_threshold=70', 'thin_pool_autoextend_percent=30']);
    expect(made.profilePath).toBe(`${PROFILES}/${made.profile}.profile`);

    // Device-mapper: one thin-pool target, 512K blocks (1024 sectors), no zeroing.
    const table = await dm.table(made.poolName);
    expect(table).toHaveLength(1);
    expect(table[0]).toMatchObject({ type: 'thin-pool', length: Number(pool.lv_size) / 512 });
    expect(table[0]!.params.trim()).toMatch(/^\d+:\d+ \d+:\d+ 1024 \d+ 1 skip_block_zeroing$/);
  });

  it('reuses its own pool (activating it again), and refuses a physical volume of another volume group', async () => {
    const again = await setUpDirectLvm(options(disk.path));
    expect(again).toMatchObject({ poolName: lvmDmName(VG, 'thinpool'), created: false });
    expect((await report('lvs', 'lv_name', VG)).map((l) => l.lv_name)).toEqual(['thinpool']);
    await lvm('vgchange', '--activate', 'n', VG);
    expect(await dm.info(again.poolName).catch(() => undefined)).toBeUndefined();
    expect(await setUpDirectLvm(options(disk.path))).toMatchObject({ poolName: again.poolName, created: false });
    expect((await dm.table(again.poolName))[0]?.type).toBe('thin-pool');
    await expect(setUpDirectLvm({ ...options(disk.path), vg: `${RUN}other` })).rejects.toMatchObject({
      code: 'ERR_DM_INVALID_ARG',
      message: expect.stringContaining(`already an LVM physical volume of volume group '${VG}'`),
    });
  });

  it('undoes the physical volume when a later step fails', async () => {
    // The volume group name is taken (by the pool above): vgcreate fails after pvcreate.
    const e = await setUpDirectLvm(options(spare.path)).catch((x: unknown) => x);
    expect(e).toMatchObject({ name: 'DmError', code: 'ERR_DM_TOOL', message: expect.stringMatching(/vgcreate.*already exists/) });
    expect((await report('pvs', 'pv_name')).map((p) => p.pv_name)).not.toContain(spare.path);
    expect(await blkidStatus(spare.path)).toBe(2);
  });

  it('refuses a pool LVM has used for thin volumes of its own, even once they are gone', async () => {
    const vg2 = `${RUN}vg2`;
    vg2Made = true;
    const refused = { code: 'ERR_DM_INVALID_ARG', message: expect.stringMatching(/has held LVM thin volumes \(1 now/) };
    await setUpDirectLvm({ ...options(spare.path), vg: vg2 });
    await lvm('lvcreate', '--type', 'thin', '--thinpool', `${vg2}/thinpool`, '--virtualsize', '16M', '-n', 'lvmthin');
    await expect(setUpDirectLvm({ ...options(spare.path), vg: vg2 })).rejects.toMatchObject(refused);
    await lvm('lvremove', '-y', `${vg2}/lvmthin`);
    await expect(setUpDirectLvm({ ...options(spare.path), vg: vg2 })).rejects.toMatchObject({
      code: 'ERR_DM_INVALID_ARG',
      message: expect.stringContaining('(0 now, LVM transaction id 2)'),
    });
    await lvm('vgremove', '-f', vg2);
    await lvm('pvremove', '-y', spare.path);
    vg2Made = false;
  });

  it('a DeviceSet on it creates, mounts, writes and reads back, across a deactivation of the volume group', async () => {
    const root = `${SCRATCH}/set`;
    const open = () =>
      DeviceSet.open({
        root,
        baseSize: '64M',
        directLvmDevice: disk.path,
        directLvmVg: VG,
        thinpPercent: 90,
        thinpMetaPercent: 2,
        thinpAutoextendThreshold: 70,
        thinpAutoextendPercent: 30,
        lvmProfileDir: PROFILES,
        lvmConfig: LVM_CONFIG,
      });
    const mnt = `${SCRATCH}/mnt`;
    let ds = await open();
    try {
      expect(ds.pool.name).toBe(lvmDmName(VG, 'thinpool'));
      await ds.create('c1');
      await ds.mount('c1', mnt);
      await writeFile(`${mnt}/hello`, 'direct-lvm');
      await ds.unmount('c1');
      await ds.mount('c1', mnt);
      expect(await readFile(`${mnt}/hello`, 'utf8')).toBe('direct-lvm');
      await ds.unmount('c1');
    } finally {
      await ds.close();
    }
    // As after a reboot: LVM takes the pool down; the next open activates it again.
    await lvm('vgchange', '--activate', 'n', VG);
    expect(await dm.info(lvmDmName(VG, 'thinpool')).catch(() => undefined)).toBeUndefined();
    ds = await open();
    try {
      expect(ds.list()).toEqual(['c1']);
      await ds.mount('c1', mnt);
      expect(await readFile(`${mnt}/hello`, 'utf8')).toBe('direct-lvm');
      await ds.unmount('c1');
    } finally {
      await ds.close();
    }
    expect((await dm.table(lvmDmName(VG, 'thinpool')))[0]?.type).toBe('thin-pool'); // LVM's pool stays up: the set does not own it
  });
});
