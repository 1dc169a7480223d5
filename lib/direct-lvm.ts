// Docker's direct-lvm set-up (dm.directlvm_device and the dm.thinp_* options):
// on an empty block device, make an LVM physical volume, a volume group, a
// data and a metadata logical volume, convert them into an LVM thin pool with
// 512K chunks and no zeroing, and attach an autoextend profile to the pool.
// LVM's own tools do the work (Debian lvm2), as child processes without a
// shell. A device that already holds anything is refused; a device that holds
// the pool an earlier call made is reused.
import { execFile } from 'node:child_process';
import { mkdir, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, isAbsolute, join, resolve as resolvePath } from 'node:path';
import { DmError, invalidArg } from './errors';
import { udevRunning } from './nodes';
import { Undo } from './undo';
import { checkName, checkOptions, checkPath } from './validate';

/** Docker's defaults (moby's setupDirectLVM). */
export const DIRECT_LVM_DEFAULTS = {
  vg: 'docker',
  thinpPercent: 95,
  thinpMetaPercent: 1,
  autoextendThreshold: 80,
  autoextendPercent: 20,
  profileDir: '/etc/lvm/profile',
} as const;

/** The pool's data and metadata logical volumes, as Docker named them. */
export const THIN_POOL_LV = 'thinpool';
const THIN_POOL_META_LV = 'thinpoolmeta';
/** Docker's `lvconvert -c 512K --zero n`. */
const CHUNK_SIZE = '512K';

/** Options of setUpDirectLvm. */
export interface DirectLvmOptions {
  /** The empty block device to give to LVM (dm.directlvm_device). */
  device: string;
  /** Volume group to create (default 'docker'); the pool is VG/thinpool. */
  vg?: string;
  /** Percent of the volume group for the pool's data (dm.thinp_percent, default 95). Give both percents or neither. */
  thinpPercent?: number;
  /** Percent of the volume group for the pool's metadata (dm.thinp_metapercent, default 1). */
  thinpMetaPercent?: number;
  /** LVM extends the pool when its data use passes this percent (dm.thinp_autoextend_threshold, default 80; 50..100, 100: never). */
  autoextendThreshold?: number;
  /** ... by this percent of its size (dm.thinp_autoextend_percent, default 20). */
  autoextendPercent?: number;
  /**
   * Where the profile `<vg>-thinpool.profile` is written and where the LVM
   * commands run here look for profiles (default /etc/lvm/profile, LVM's own).
   * dmeventd, which does the extending, reads lvm.conf's config/profile_dir.
   */
  profileDir?: string;
  /** More LVM configuration for every LVM command run here, e.g. 'activation { monitoring = 0 }'. */
  lvmConfig?: string;
}

/** What setUpDirectLvm made (or found): the pool and its LVM names. */
export interface DirectLvm {
  /** The device-mapper name of the thin pool (`docker-thinpool` for the defaults): use it as a DeviceSet's poolName. */
  poolName: string;
  vg: string;
  /** The pool's logical volume ('thinpool'). */
  lv: string;
  device: string;
  /** The LVM metadata profile attached to the pool, and its file. */
  profile: string;
  profilePath: string;
  /** Bytes of the pool's data and metadata volumes. */
  dataSize: number;
  metadataSize: number;
  /** False when the pool was there already from an earlier set-up on this device. */
  created: boolean;
}

type Settings = Required<Omit<DirectLvmOptions, 'lvmConfig'>> & { lvmConfig: string };

const KEYS = [
  'device',
  'vg',
  'thinpPercent',
  'thinpMetaPercent',
  'autoextendThreshold',
  'autoextendPercent',
  'profileDir',
  'lvmConfig',
] as const;

function percent(value: unknown, field: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw invalidArg(field, `${String(value)} is not a whole percent from ${min} to ${max}`);
  }
  return value;
}

// LVM's name rules (lib/misc/lvm-string.c): these characters, no leading '-'.
const LVM_NAME = /^[A-Za-z0-9+_.][A-Za-z0-9+_.-]*$/;

/** The device-mapper name LVM gives VG/LV: each '-' inside a name doubled, the two joined by '-'. */
export const lvmDmName = (vg: string, lv: string) => `${vg.replace(/-/g, '--')}-${lv.replace(/-/g, '--')}`;

/**
 * Check direct-lvm options and fill in Docker's defaults; throws
 * ERR_DM_INVALID_ARG naming the field. `names` names the fields as the
 * caller's options do (the DeviceSet's are `directLvmDevice`, ...).
 */
export function checkDirectLvmOptions(options: unknown, names: Partial<Record<keyof DirectLvmOptions, string>> = {}): Settings {
  const o = checkOptions<DirectLvmOptions>(options, 'options', KEYS);
  const f = (k: keyof DirectLvmOptions) => names[k] ?? k;
  const device = resolvePath(checkPath(o.device, f('device')));
  const vg = o.vg ?? DIRECT_LVM_DEFAULTS.vg;
  if (typeof vg !== 'string' || !LVM_NAME.test(vg) || vg === '.' || vg === '..' || vg.length > 127) {
    const rule = "letters, digits, '+', '_', '.', '-'; not starting with '-'";
    throw invalidArg(f('vg'), `${JSON.stringify(vg)} is not an LVM volume group name (${rule})`);
  }
  checkName(lvmDmName(vg, THIN_POOL_LV), f('vg'));
  const thinp = percent(o.thinpPercent, f('thinpPercent'), 1, 99);
  const meta = percent(o.thinpMetaPercent, f('thinpMetaPercent'), 1, 99);
  // Docker's rule: the two split the volume group, so they are given together.
  if ((thinp === undefined) !== (meta === undefined)) {
    const missing = thinp === undefined ? f('thinpPercent') : f('thinpMetaPercent');
    throw invalidArg(missing, `give both ${f('thinpPercent')} and ${f('thinpMetaPercent')}, or neither`);
  }
  if (thinp !== undefined && meta !== undefined && thinp + meta > 100) {
    throw invalidArg(f('thinpPercent'), `${f('thinpPercent')} ${thinp} and ${f('thinpMetaPercent')} ${meta} add up to more than 100`);
  }
  // LVM reads a threshold below 50 as 50; refuse it rather than let it change silently.
  const threshold = percent(o.autoextendThreshold, f('autoextendThreshold'), 50, 100);
  const extend = percent(o.autoextendPercent, f('autoextendPercent'), 1, 100);
  const profileDir = o.profileDir === undefined ? DIRECT_LVM_DEFAULTS.profileDir : checkPath(o.profileDir, f('profileDir'));
  if (!isAbsolute(profileDir)) throw invalidArg(f('profileDir'), `'${profileDir}' must be an absolute path`);
  if (/["\\\n\r]/.test(profileDir)) {
    throw invalidArg(f('profileDir'), 'must not contain quotes, backslashes or line breaks (it goes into LVM configuration text)');
  }
  const lvmConfig = o.lvmConfig ?? '';
  if (typeof lvmConfig !== 'string' || lvmConfig.includes('\0')) throw invalidArg(f('lvmConfig'), 'expected LVM configuration text');
  return {
    device,
    vg,
    thinpPercent: thinp ?? DIRECT_LVM_DEFAULTS.thinpPercent,
    thinpMetaPercent: meta ?? DIRECT_LVM_DEFAULTS.thinpMetaPercent,
    autoextendThreshold: threshold ?? DIRECT_LVM_DEFAULTS.autoextendThreshold,
    autoextendPercent: extend ?? DIRECT_LVM_DEFAULTS.autoextendPercent,
    profileDir,
    lvmConfig,
  };
}

interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

function spawnTool(tool: string, args: string[], env: NodeJS.ProcessEnv): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    execFile(tool, args, { encoding: 'utf8', env, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') {
        const missing = err.code === 'ENOENT';
        const pkg = tool === 'blkid' ? 'util-linux' : 'lvm2';
        const what = missing ? `${tool} is not installed (Debian: ${pkg})` : `${tool} could not run: ${err.message}`;
        return reject(new DmError(what, { code: 'ERR_DM_TOOL', cause: err }));
      }
      resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
    });
  });
}

/** Runs the LVM commands for one set-up, with the configuration they need here. */
class Lvm {
  private constructor(
    private readonly config: string,
    private readonly env: NodeJS.ProcessEnv,
    private readonly device: string,
  ) {}

  static async forSettings(s: Settings): Promise<Lvm> {
    const env: NodeJS.ProcessEnv = { ...process.env, LVM_SUPPRESS_FD_WARNINGS: '1' };
    const parts: string[] = [];
    if (!(await udevRunning())) {
      // No udev (containers, the test VM): LVM waits for none and makes its
      // own /dev nodes, and libdevmapper does too.
      parts.push('activation { udev_sync = 0 udev_rules = 0 } devices { obtain_device_list_from_udev = 0 }');
      env.DM_DISABLE_UDEV = '1';
    }
    parts.push(`config { profile_dir = "${s.profileDir}" }`);
    if (s.lvmConfig.trim()) parts.push(s.lvmConfig);
    return new Lvm(parts.join(' '), env, s.device);
  }

  /** `lvm COMMAND ARGS...`; a failure is a DmError quoting LVM's complaint. */
  async run(command: string, args: string[]): Promise<string> {
    const r = await spawnTool('lvm', [command, '--config', this.config, ...args], this.env);
    if (r.code !== 0) {
      const said = (r.stderr || r.stdout).trim().replace(/\s*\n\s*/g, '; ');
      throw new DmError(`lvm ${command} ${args.join(' ')} failed (exit ${r.code}): ${said}`, { code: 'ERR_DM_TOOL', device: this.device });
    }
    return r.stdout;
  }

  /** A JSON report (pvs, lvs): its rows. */
  async report(command: 'pvs' | 'lvs', fields: string[], args: string[] = []): Promise<Array<Record<string, string>>> {
    const out = await this.run(command, ['--reportformat', 'json', '--units', 'b', '--nosuffix', '-o', fields.join(','), ...args]);
    const parsed = JSON.parse(out) as { report: Array<Record<string, Array<Record<string, string>>>> };
    return parsed.report.flatMap((r) => r[command === 'pvs' ? 'pv' : 'lv'] ?? []);
  }
}

const sameDevice = async (a: string, rdev: number) => (await stat(a).catch(() => undefined))?.rdev === rdev;

/** What `blkid -p` finds on the device, as 'a filesystem of type ext4', or undefined when it finds nothing. */
async function signatureOn(device: string): Promise<string | undefined> {
  const r = await spawnTool('blkid', ['-p', '-o', 'export', device], process.env);
  if (r.code === 2) return undefined; // nothing found
  if (r.code !== 0) {
    throw new DmError(`blkid -p ${device} failed (exit ${r.code}): ${(r.stderr || r.stdout).trim()}`, { code: 'ERR_DM_TOOL', device });
  }
  const pairs = r.stdout
    .split('\n')
    .map((l) => l.split('='))
    .filter((kv) => kv.length >= 2);
  const tags = Object.fromEntries(pairs.map(([k, ...v]) => [k, v.join('=')]));
  if (tags.PTTYPE) return `a ${tags.PTTYPE} partition table`;
  if (tags.TYPE) return `${tags.USAGE === 'filesystem' ? 'a filesystem' : 'a signature'} of type ${tags.TYPE}`;
  return `a signature (${r.stdout.trim().replace(/\n/g, ' ')})`;
}

/**
 * Set up Docker's direct-lvm thin pool on an empty block device, or reuse the
 * one an earlier call made there. Runs `pvcreate`, `vgcreate`, two
 * `lvcreate`s, `lvconvert --thinpool` and `lvchange --metadataprofile`, and
 * writes the autoextend profile; a failing step undoes the earlier ones. A
 * device holding a filesystem, partition table, or LVM signature, or already a
 * physical volume of another volume group, is refused before anything is made.
 */
export async function setUpDirectLvm(options: DirectLvmOptions): Promise<DirectLvm> {
  const s = checkDirectLvmOptions(options);
  const st = await stat(s.device).catch((e: NodeJS.ErrnoException) => {
    throw invalidArg('device', `${s.device}: ${e.code === 'ENOENT' ? 'no such device' : e.message}`);
  });
  if (!st.isBlockDevice()) throw invalidArg('device', `${s.device} is not a block device`);
  const lvm = await Lvm.forSettings(s);
  const profile = `${s.vg}-${THIN_POOL_LV}`;
  const profilePath = join(s.profileDir, `${profile}.profile`);
  const pool = `${s.vg}/${THIN_POOL_LV}`;

  // Already a physical volume? Ours (the pool is there): reuse; anything else: refuse.
  let pv: Record<string, string> | undefined;
  for (const p of await lvm.report('pvs', ['pv_name', 'vg_name'])) if (!pv && (await sameDevice(p.pv_name ?? '', st.rdev))) pv = p;
  let created = false;
  if (pv) {
    if (pv.vg_name !== s.vg) {
      const held = pv.vg_name ? `of volume group '${pv.vg_name}'` : 'without a volume group';
      throw invalidArg(
        'device',
        `${s.device} is already an LVM physical volume ${held}: give an empty device, or remove it from LVM (vgreduce/pvremove) if its data is not needed`,
      );
    }
    const lvs = await lvm.report('lvs', ['lv_name', 'segtype', 'thin_count', 'transaction_id'], [s.vg]);
    const found = lvs.find((lv) => lv.lv_name === THIN_POOL_LV && lv.segtype === 'thin-pool');
    if (!found) {
      throw invalidArg(
        'device',
        `${s.device} belongs to volume group '${s.vg}' but it holds no thin pool '${THIN_POOL_LV}' (a set-up cut short?): ` +
          `remove it (vgremove ${s.vg}; pvremove ${s.device}) and try again`,
      );
    }
    // LVM's own thin volumes take thin ids a device set also hands out; and
    // once LVM has used the pool (its transaction id is past 0) it refuses to
    // activate it after anyone else moved the kernel's transaction id.
    if (Number(found.thin_count) > 0 || Number(found.transaction_id) !== 0) {
      throw invalidArg(
        'device',
        `the thin pool ${pool} has held LVM thin volumes (${found.thin_count} now, LVM transaction id ${found.transaction_id}): ` +
          'a device set needs a pool LVM itself never used',
      );
    }
    await lvm.run('lvchange', ['--activate', 'y', pool]);
    await writeProfile(s, profilePath);
    await lvm.run('lvchange', ['--metadataprofile', profile, pool]);
  } else {
    const found = await signatureOn(s.device);
    if (found) {
      throw invalidArg(
        'device',
        `${s.device} holds ${found} (blkid -p): direct-lvm needs an empty device; wipe it (wipefs -a) only if its data is not needed`,
      );
    }
    await Undo.guard(async (undo) => {
      await lvm.run('pvcreate', [s.device]);
      undo.push(() => lvm.run('pvremove', ['-y', s.device]));
      await lvm.run('vgcreate', [s.vg, s.device]);
      undo.push(() => lvm.run('vgremove', ['-f', s.vg])); // its logical volumes with it
      await lvm.run('lvcreate', ['-y', '--wipesignatures', 'y', '-n', THIN_POOL_LV, '--extents', `${s.thinpPercent}%VG`, s.vg]);
      await lvm.run('lvcreate', ['-y', '--wipesignatures', 'y', '-n', THIN_POOL_META_LV, '--extents', `${s.thinpMetaPercent}%VG`, s.vg]);
      const meta = `${s.vg}/${THIN_POOL_META_LV}`;
      await lvm.run('lvconvert', ['-y', '--zero', 'n', '-c', CHUNK_SIZE, '--thinpool', pool, '--poolmetadata', meta]);
      if (await writeProfile(s, profilePath)) undo.push(() => unlink(profilePath));
      await lvm.run('lvchange', ['--metadataprofile', profile, pool]);
    });
    created = true;
  }
  const [lv] = await lvm.report('lvs', ['lv_dm_path', 'lv_size', 'lv_metadata_size'], [pool]);
  if (!lv?.lv_dm_path) throw new DmError(`lvs found no active thin pool ${pool}`, { code: 'ERR_DM_TOOL', device: s.device });
  return {
    poolName: basename(lv.lv_dm_path),
    vg: s.vg,
    lv: THIN_POOL_LV,
    device: s.device,
    profile,
    profilePath,
    dataSize: Number(lv.lv_size),
    metadataSize: Number(lv.lv_metadata_size),
    created,
  };
}

/** Write the autoextend profile (Docker's text); true when the file is new. */
async function writeProfile(s: Settings, path: string): Promise<boolean> {
  await mkdir(s.profileDir, { recursive: true, mode: 0o755 });
  const existed = await stat(path).then(
    () => true,
    () => false,
  );
  const text = [
    'activation {',
    `\tthin_pool_autoextend_threshold = ${s.autoextendThreshold}`,
    `\tthin_pool_autoextend_percent = ${s.autoextendPercent}`,
    '}\n',
  ].join('\n');
  await writeFile(path, text, { mode: 0o644 });
  return !existed;
}

/** The DeviceSet's direct-lvm options (Docker's dm.directlvm_device, dm.thinp_*). */
export interface DirectLvmSetOptions {
  /** An empty block device: the set makes an LVM thin pool on it (or reuses the one it made) and uses that pool. */
  directLvmDevice?: string;
  /** Its volume group (default 'docker'). */
  directLvmVg?: string;
  thinpPercent?: number;
  thinpMetaPercent?: number;
  thinpAutoextendThreshold?: number;
  thinpAutoextendPercent?: number;
  /** Where the LVM autoextend profile goes (default /etc/lvm/profile). */
  lvmProfileDir?: string;
  /** More LVM configuration for the LVM commands, e.g. 'activation { monitoring = 0 }'. */
  lvmConfig?: string;
}

export const DIRECT_LVM_SET_KEYS = [
  'directLvmDevice',
  'directLvmVg',
  'thinpPercent',
  'thinpMetaPercent',
  'thinpAutoextendThreshold',
  'thinpAutoextendPercent',
  'lvmProfileDir',
  'lvmConfig',
] as const;

const SET_NAMES = {
  device: 'directLvmDevice',
  vg: 'directLvmVg',
  thinpPercent: 'thinpPercent',
  thinpMetaPercent: 'thinpMetaPercent',
  autoextendThreshold: 'thinpAutoextendThreshold',
  autoextendPercent: 'thinpAutoextendPercent',
  profileDir: 'lvmProfileDir',
  lvmConfig: 'lvmConfig',
} as const;

/** The DeviceSet's other ways to name or make a pool: none goes with directLvmDevice. */
const OTHER_POOL_KEYS = ['poolName', 'dataDevice', 'metadataDevice', 'dataSize', 'metadataSize', 'blockSize'] as const;

/**
 * The DeviceSet's direct-lvm options checked (undefined when no
 * directLvmDevice is given); they exclude the other ways to name a pool.
 */
export function directLvmFromSetOptions(
  o: DirectLvmSetOptions & Partial<Record<(typeof OTHER_POOL_KEYS)[number], unknown>>,
): DirectLvmOptions | undefined {
  if (o.directLvmDevice === undefined) {
    const stray = DIRECT_LVM_SET_KEYS.find((k) => o[k] !== undefined);
    if (stray) throw invalidArg(stray, 'applies only with directLvmDevice');
    return undefined;
  }
  const other = OTHER_POOL_KEYS.find((k) => o[k] !== undefined);
  if (other) {
    throw invalidArg('directLvmDevice', `give directLvmDevice or ${other}, not both (direct-lvm makes its own pool, with 512K blocks)`);
  }
  const d: DirectLvmOptions = { device: o.directLvmDevice };
  if (o.directLvmVg !== undefined) d.vg = o.directLvmVg;
  if (o.thinpPercent !== undefined) d.thinpPercent = o.thinpPercent;
  if (o.thinpMetaPercent !== undefined) d.thinpMetaPercent = o.thinpMetaPercent;
  if (o.thinpAutoextendThreshold !== undefined) d.autoextendThreshold = o.thinpAutoextendThreshold;
  if (o.thinpAutoextendPercent !== undefined) d.autoextendPercent = o.thinpAutoextendPercent;
  if (o.lvmProfileDir !== undefined) d.profileDir = o.lvmProfileDir;
  if (o.lvmConfig !== undefined) d.lvmConfig = o.lvmConfig;
  checkDirectLvmOptions(d, SET_NAMES);
  return d;
}
