// What is under a pool: loop-backed sparse files or block devices. File and
// device sizes, the free space under the files, growing them, finding a
// pool's loop files again from its table, and Docker's pool name.
import { open, stat, statfs, truncate } from 'node:fs/promises';
import type { DevNumber } from '../binding';
import * as dm from '../dm';
import { DmError, errnoOf, invalidArg } from '../errors';
import * as loop from '../loop';
import { mapperPath } from '../nodes';
import * as sys from '../sys';
import { blockName } from '../sysfs';
import type { ThinPoolParams } from '../targets/thin-pool';
import { checkName, type DmName } from '../validate';
import { METADATA_BLOCK_SIZE, THIN_POOL_DEFAULTS } from './limits';

/** The sparse files behind a loop-backed pool. */
export interface LoopBacking {
  dir: string;
  dataFile: string;
  metadataFile: string;
}

export async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

export async function zeroHeader(path: string): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.write(Buffer.alloc(METADATA_BLOCK_SIZE), 0, METADATA_BLOCK_SIZE, 0);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export async function deviceSize(path: string): Promise<number> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw new DmError(`cannot open ${path}: ${(e as NodeJS.ErrnoException).code}`, {
      code: errnoOf(e as NodeJS.ErrnoException),
      syscall: 'open',
      device: path,
      cause: e,
    });
  }
  try {
    const st = await fh.stat();
    if (!st.isBlockDevice()) throw invalidArg('device', `${path} is not a block device`);
    return await sys.blockDeviceSize(fh.fd, path);
  } finally {
    await fh.close();
  }
}

/** Docker's pool name: `<prefix>-MAJ:MIN-INO-pool` of the directory. */
export async function defaultPoolName(dir: string, prefix: string = THIN_POOL_DEFAULTS.prefix): Promise<DmName> {
  const st = await stat(dir, { bigint: true });
  const major = Number((st.dev >> 8n) & 0xfffn) | Number((st.dev >> 32n) & ~0xfffn);
  const minor = Number(st.dev & 0xffn) | Number((st.dev >> 12n) & ~0xffn);
  return checkName(`${prefix}-${major}:${minor}-${st.ino}-pool`, 'name');
}

/**
 * The /dev path of a device a table names as MAJ:MIN (a path is returned as
 * it is): /dev/mapper/NAME for device-mapper devices, /dev/NAME otherwise.
 * The one MAJ:MIN → path function of the library. With `missing: 'keep'`, a
 * number with no device is returned as given instead of failing with ENXIO.
 */
export async function devicePath(device: string, o: { missing?: 'fail' | 'keep' } = {}): Promise<string> {
  const m = /^(\d+):(\d+)$/.exec(device);
  if (!m) return device;
  const dev = { major: Number(m[1]), minor: Number(m[2]) };
  const name = await blockName(dev);
  if (!name) {
    if (o.missing === 'keep') return device;
    throw new DmError(`no block device ${device}`, { code: 'ENXIO', device });
  }
  return name.startsWith('dm-') ? mapperPath((await dm.info(dev)).name) : `/dev/${name}`;
}

export async function loopFile(device: string): Promise<string | undefined> {
  const m = /^(\d+):(\d+)$/.exec(device);
  const dev: DevNumber | undefined = m ? { major: Number(m[1]), minor: Number(m[2]) } : undefined;
  const block = dev ? await blockName(dev) : /^\/dev\/(loop\d+)$/.exec(device)?.[1];
  if (!block?.startsWith('loop')) return undefined;
  return (await loop.info(Number(block.slice(4))).catch(() => undefined))?.backingFile;
}

export async function loopBackingOf(p: ThinPoolParams): Promise<LoopBacking | undefined> {
  const [dataFile, metadataFile] = await Promise.all([loopFile(p.dataDevice), loopFile(p.metadataDevice)]);
  if (!dataFile || !metadataFile) return undefined;
  return { dir: dataFile.slice(0, dataFile.lastIndexOf('/')), dataFile, metadataFile };
}

/** Free bytes of the filesystem holding `file` (statfs f_bfree, as Docker: the loop driver writes as root, which may use the reserved blocks). */
export async function hostFree(file: string): Promise<number> {
  const st = await statfs(file).catch((e: NodeJS.ErrnoException) => {
    throw new DmError(`cannot statfs ${file}: ${e.code}`, { code: errnoOf(e), syscall: 'statfs', device: file, cause: e });
  });
  return st.bfree * st.bsize;
}

/** A file's size, or undefined when there is no such file. */
export async function fileSize(path: string): Promise<number | undefined> {
  return stat(path).then(
    (st) => st.size,
    (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return undefined;
      throw new DmError(`cannot stat ${path}: ${e.code}`, { code: errnoOf(e), syscall: 'stat', device: path, cause: e });
    },
  );
}

export async function growFile(file: string, size: number | undefined, field: string, device: string): Promise<void> {
  if (size === undefined) return;
  const current = (await stat(file)).size;
  if (size < current) throw invalidArg(field, `${file} is ${current} bytes; shrinking a thin pool is not possible`);
  if (size === current) return;
  await truncate(file, size);
  await loop.refreshCapacity(await devicePath(device));
}
