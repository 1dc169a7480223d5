// Bringing a pool up: on loop-backed sparse files (Docker's loop-lvm), on
// given block devices (direct-lvm), or an existing pool device. Each resolves
// with the parts a ThinPool is made of; pool.ts wraps them.
import { mkdir, open, stat, truncate, unlink } from 'node:fs/promises';
import { join, resolve as resolvePath } from 'node:path';
import * as dm from '../dm';
import { DmError, invalidArg } from '../errors';
import { humanSize } from '../format';
import * as loop from '../loop';
import { ensureBlockNode, mapperPath } from '../nodes';
import { parseSize } from '../size';
import { thinPool as poolGrammar, type ThinPoolParams } from '../targets/thin-pool';
import { Undo } from '../undo';
import { checkBoolean, checkName, checkOptions, checkPath, type DmName, type Sectors } from '../validate';
import { deviceSize, exists, fileSize, loopBackingOf, zeroHeader, defaultPoolName, type LoopBacking } from './backing';
import {
  checkMetadataSize,
  checkPoolTable,
  MAX_METADATA_SIZE,
  poolSectors,
  SECTOR,
  TABLE_KEYS,
  THIN_POOL_DEFAULTS,
  type DirectOptions,
  type LoopBackedOptions,
  type ResizeOptions,
  defaultLowWaterMark,
} from './limits';

/** What a ThinPool is made of. */
export interface PoolParts {
  name: DmName;
  /** /dev/mapper/NAME. */
  path: string;
  params: ThinPoolParams;
  /** The pool's length in sectors. */
  sectors: Sectors;
  loopBacking: LoopBacking | undefined;
}

/**
 * A pool on `dir/data` and `dir/metadata` sparse files attached to loop
 * devices (created on first use). If the pool device already exists it is
 * opened; if the files exist they are reattached without wiping.
 */
export async function loopBackedParts(options: LoopBackedOptions): Promise<{ parts: PoolParts; resize?: ResizeOptions }> {
  const o = checkOptions<LoopBackedOptions>(options, 'options', ['dir', 'name', 'prefix', 'dataSize', 'metadataSize', ...TABLE_KEYS]);
  const dir = resolvePath(checkPath(o.dir, 'dir'));
  const table = checkPoolTable(o);
  const dataSize = parseSize(o.dataSize ?? THIN_POOL_DEFAULTS.dataSize, 'dataSize');
  const metadataSize = checkMetadataSize(parseSize(o.metadataSize ?? THIN_POOL_DEFAULTS.metadataSize, 'metadataSize'), 'metadataSize');
  if (dataSize < table.blockSectors * SECTOR)
    throw invalidArg('dataSize', `${dataSize} bytes is less than one ${table.blockSectors * SECTOR}-byte block`);
  const named = o.name === undefined ? undefined : checkName(o.name, 'name');
  if (o.prefix !== undefined) checkName(o.prefix, 'prefix');
  await mkdir(dir, { recursive: true });
  const name = named ?? (await defaultPoolName(dir, o.prefix));
  const backing: LoopBacking = { dir, dataFile: join(dir, 'data'), metadataFile: join(dir, 'metadata') };

  let live = await dm.info(name).catch(() => undefined);
  if (live && !live.activeTable) {
    await dm.remove(name); // made, never loaded: a process died in between
    live = undefined;
  }
  // Sizes the caller gave for files that exist: larger grows, smaller is refused.
  const given = { data: o.dataSize !== undefined, metadata: o.metadataSize !== undefined };
  const existing = { data: await fileSize(backing.dataFile), metadata: await fileSize(backing.metadataFile) };
  const wanted = { data: dataSize, metadata: metadataSize };
  for (const what of ['data', 'metadata'] as const) {
    const has = existing[what];
    if (given[what] && has !== undefined && wanted[what] < has) {
      throw invalidArg(
        `${what}Size`,
        `${backing[`${what}File`]} is ${has} bytes (${humanSize(has)}); a thin pool's ${what} cannot shrink to ${wanted[what]}`,
      );
    }
  }
  const grow = (what: 'data' | 'metadata') => given[what] && existing[what] !== undefined && wanted[what] > existing[what]!;

  if (live) {
    const parts = await openParts(name);
    if (parts.loopBacking?.dataFile !== backing.dataFile) {
      throw new DmError(`a device named '${name}' exists but is not a pool on ${backing.dataFile}`, { code: 'EEXIST', device: name });
    }
    if (!grow('data') && !grow('metadata')) return { parts };
    return { parts, resize: { ...(grow('data') ? { dataSize } : {}), ...(grow('metadata') ? { metadataSize } : {}) } };
  }

  return Undo.guard(async (undo) => {
    const fresh = !(await exists(backing.metadataFile));
    for (const what of ['data', 'metadata'] as const) {
      const file = backing[`${what}File`];
      const has = existing[what];
      if (has !== undefined) {
        // The pool is not active: growing the file before the loop attaches is the whole resize.
        if (grow(what)) {
          await truncate(file, wanted[what]);
          undo.push(() => truncate(file, has));
        }
        continue;
      }
      await (await open(file, 'wx')).close();
      undo.push(() => unlink(file));
      await truncate(file, wanted[what]);
    }
    if (fresh) await zeroHeader(backing.metadataFile); // the kernel formats metadata whose superblock is zero
    // Autoclear: the loops detach by themselves once the pool device is removed.
    const dataLoop = await loop.attach(backing.dataFile, { autoclear: true });
    undo.push(() => dataLoop.release());
    const metaLoop = await loop.attach(backing.metadataFile, { autoclear: true });
    undo.push(() => metaLoop.release());
    const sectors = poolSectors((await stat(backing.dataFile)).size, table.blockSectors);
    if (sectors === 0) throw invalidArg('dataSize', `${backing.dataFile} is smaller than one block`);
    const params: ThinPoolParams = {
      metadataDevice: metaLoop.path,
      dataDevice: dataLoop.path,
      dataBlockSectors: table.blockSectors,
      lowWaterMark: table.lowWaterMark ?? defaultLowWaterMark(sectors / table.blockSectors),
      features: table.features,
    };
    const dev = await dm.create(name, { table: [{ start: 0, length: sectors, type: 'thin-pool', params: poolGrammar.format(params) }] });
    // The pool holds both loops open now; drop our handles so autoclear can act later.
    await dataLoop.release();
    await metaLoop.release();
    return { parts: { name, path: dev.path, params, sectors, loopBacking: backing } };
  });
}

/** A pool on given block devices (Docker's direct-lvm with dm.datadev / dm.metadatadev). */
export async function directParts(options: DirectOptions): Promise<PoolParts> {
  const o = checkOptions<DirectOptions>(options, 'options', ['name', 'dataDevice', 'metadataDevice', 'zeroMetadata', ...TABLE_KEYS]);
  const name = checkName(o.name, 'name');
  const dataDevice = checkPath(o.dataDevice, 'dataDevice');
  const metadataDevice = checkPath(o.metadataDevice, 'metadataDevice');
  const table = checkPoolTable(o);
  const zero = checkBoolean(o.zeroMetadata, 'zeroMetadata') ?? false;
  const [dataBytes, metaBytes] = await Promise.all([deviceSize(dataDevice), deviceSize(metadataDevice)]);
  checkMetadataSize(Math.min(metaBytes, MAX_METADATA_SIZE), 'metadataDevice');
  const sectors = poolSectors(dataBytes, table.blockSectors);
  if (sectors === 0) throw invalidArg('dataDevice', `${dataDevice} is smaller than one block`);
  if (zero) await zeroHeader(metadataDevice);
  const params: ThinPoolParams = {
    metadataDevice,
    dataDevice,
    dataBlockSectors: table.blockSectors,
    lowWaterMark: table.lowWaterMark ?? defaultLowWaterMark(sectors / table.blockSectors),
    features: table.features,
  };
  const dev = await dm.create(name, { table: [{ start: 0, length: sectors, type: 'thin-pool', params: poolGrammar.format(params) }] });
  return { name, path: dev.path, params, sectors, loopBacking: undefined };
}

/** An existing pool device (Docker's dm.thinpooldev). */
export async function openParts(poolName: string): Promise<PoolParts> {
  const name = checkName(poolName, 'name');
  const table = await dm.table(name);
  if (table.length !== 1 || table[0]!.type !== 'thin-pool') {
    throw new DmError(`'${name}' is not a thin pool (its table is ${table.map((t) => t.type).join(', ') || 'empty'})`, {
      code: 'ERR_DM_INVALID_ARG',
      device: name,
    });
  }
  const params = poolGrammar.parse(table[0]!.params);
  // Thin tables name the pool by its node: make sure it is there.
  await ensureBlockNode(mapperPath(name), await dm.info(name));
  return {
    name,
    path: mapperPath(name),
    params,
    sectors: table[0]!.length as Sectors /* the kernel's */,
    loopBacking: await loopBackingOf(params),
  };
}
