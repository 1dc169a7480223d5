// Reading a store that Docker's devicemapper graph driver left behind, so its
// images and containers can be mounted and copied out after Docker dropped the
// driver. ROOT is the driver's home (/var/lib/docker/devicemapper):
//
//   ROOT/devicemapper/data, metadata   the pool's sparse loop files
//   ROOT/metadata/<hash>               one JSON file per device: device_id, size,
//                                      transaction_id, initialized, deleted
//   ROOT/metadata/base                 the base device (hash '')
//   ROOT/metadata/deviceset-metadata   next_device_id, BaseDeviceUUID, BaseDeviceFilesystem
//   ROOT/metadata/transaction-metadata open_transaction_id, device_hash, device_id
//   ROOT/devicemapper/json             the oldest drivers' single file ({"Devices": {hash: ...}})
//
// Device-mapper names are `docker-MAJ:MIN-INO-<hash>` (`-base`, `-pool`), MAJ,
// MIN and INO from stat() of ROOT as moby formatted them. Docker records no
// parent of a device (layers live in its graph database): parent is null.
//
// Read-only, always: nothing under ROOT is written. A pool that is down is
// brought up on read-only loops with the thin-pool's read_only feature (the
// kernel then opens the metadata device for reading only), thin devices are
// activated read-only, filesystems mounted ro. The lock is a flock on ROOT
// itself (no lock file). An open transaction the pool never committed is
// one Docker would roll back on start (deleting that device): its device is
// left out, as Docker would have left it.
import { constants } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import * as dm from '../dm';
import { DmError, invalidArg } from '../errors';
import { filesystemUuid, type FsType } from '../filesystem';
import * as loop from '../loop';
import { RecordMap, type DeviceRecord, type RecordStore, type SetRecord, type TransactionRecord } from '../metadata-store';
import { thinPool as poolGrammar } from '../targets/thin-pool';
import { THIN_POOL_DEFAULTS, ThinPool } from '../pool/index';
import * as sys from '../sys';
import { Undo } from '../undo';
import {
  corrupt,
  DEVICE_SET_FILE,
  missing,
  readDockerMetadata,
  rollBack,
  TRANSACTION_FILE,
  type DockerSetMetadata,
} from './docker-metadata';

/** DeviceSet options that would change a Docker store (or make no sense for one). */
export const DOCKER_REFUSED_OPTIONS = [
  'baseSize',
  'mkfsArgs',
  'dataSize',
  'metadataSize',
  'blockSize',
  'dataDevice',
  'metadataDevice',
] as const;

/** Options a Docker store refuses; `readOnly: false` among them (writing to Docker's store is not supported). */
export function checkDockerOptions(o: Record<string, unknown>): void {
  for (const k of DOCKER_REFUSED_OPTIONS) {
    if (o[k] !== undefined) throw invalidArg(k, "not allowed with layout 'docker': a Docker store is opened as Docker left it");
  }
  if (o.readOnly === false) throw invalidArg('readOnly', "layout 'docker' opens read-only; writing to a Docker store is not supported");
}

/** What a DeviceSet does differently on a store it may not change. */
export interface SetAccess {
  readOnly: boolean;
  /** Device-mapper names active before the set opened (Docker's own): left active by unmount and close. */
  leaveActive: ReadonlySet<string>;
}

export const READ_WRITE: SetAccess = { readOnly: false, leaveActive: new Set() };

/** The refusal of anything that would write to a Docker store. */
export function readOnlyError(what: string, root: string): DmError {
  return new DmError(
    `cannot ${what}: the Docker store under ${root} is opened read-only (layout 'docker' supports reading only; ` +
      'mount devices and copy their files out)',
    { code: 'EROFS', device: root },
  );
}

/** `docker-MAJ:MIN-INO`, the prefix of every device-mapper name moby gave a store under `root`. */
export async function dockerPrefix(root: string): Promise<string> {
  const st = await stat(root, { bigint: true });
  // moby's major() and minor() of st_dev, exactly (no high major bits).
  const major = (st.dev >> 8n) & 0xfffn;
  const minor = (st.dev & 0xffn) | ((st.dev >> 12n) & 0xfff00n);
  return `docker-${major}:${minor}-${st.ino}`;
}

/** The data block size (sectors) and transaction id in a thin-pool metadata superblock. */
export async function readPoolSuperblock(file: string): Promise<{ blockSectors: number; transactionId: number }> {
  const fh = await open(file, 'r');
  try {
    const { buffer: sb, bytesRead } = await fh.read(Buffer.alloc(512), 0, 512, 0);
    // struct thin_disk_superblock: magic at 32 (27022010), trans_id at 48, data_block_size at 336.
    if (bytesRead < 340 || sb.readBigUInt64LE(32) !== 27022010n) throw corrupt(file, 'holds no thin-pool metadata (no superblock magic)');
    return { blockSectors: sb.readUInt32LE(336), transactionId: Number(sb.readBigUInt64LE(48)) };
  } finally {
    await fh.close();
  }
}

/**
 * The store's pool: `poolName` if given (dm.thinpooldev), else
 * `docker-MAJ:MIN-INO-pool` if it is live (Docker still running, or stopped
 * without removing it), else brought up read-only on ROOT/devicemapper's
 * loop files. `owns`: this call brought it up, and close() takes it down.
 */
export async function openDockerPool(
  root: string,
  prefix: string,
  poolName: string | undefined,
): Promise<{ pool: ThinPool; owns: boolean }> {
  const name = poolName ?? `${prefix}-pool`;
  const live = await dm.info(name).catch(() => undefined);
  if (live?.activeTable || poolName !== undefined) return { pool: await ThinPool.open(name), owns: false };
  if (live) {
    const why = `device '${name}' exists with no table (Docker stopped half-way through making the pool)`;
    throw new DmError(`${why}; remove it (dmsetup remove ${name}) and open again`, { code: 'EEXIST', device: name });
  }
  const dataFile = join(root, 'devicemapper', 'data');
  const metadataFile = join(root, 'devicemapper', 'metadata');
  for (const f of [dataFile, metadataFile]) {
    if (!(await stat(f).catch(missing))) {
      const advice = 'if Docker used a pool of its own (dm.thinpooldev, direct-lvm), activate it and pass poolName';
      throw new DmError(`${f} does not exist and no pool '${name}' is active: ${advice}`, { code: 'ENOENT', device: f });
    }
  }
  const { blockSectors } = await readPoolSuperblock(metadataFile);
  return Undo.guard(async (undo) => {
    // Autoclear: the loops go by themselves once the pool device is removed.
    const metaLoop = await loop.attach(metadataFile, { readOnly: true, autoclear: true });
    undo.push(() => metaLoop.release());
    const dataLoop = await loop.attach(dataFile, { readOnly: true, autoclear: true });
    undo.push(() => dataLoop.release());
    const length = Math.floor((await stat(dataFile)).size / 512 / blockSectors) * blockSectors;
    const params = poolGrammar.format({
      metadataDevice: metaLoop.path,
      dataDevice: dataLoop.path,
      dataBlockSectors: blockSectors,
      lowWaterMark: THIN_POOL_DEFAULTS.lowWaterMark,
      features: ['skip_block_zeroing', 'read_only'],
    });
    await dm.create(name, { table: [{ start: 0, length, type: 'thin-pool', params }] });
    undo.push(() => dm.remove(name, { retry: true }));
    await dataLoop.release();
    await metaLoop.release();
    return { pool: await ThinPool.open(name), owns: true };
  });
}

/** One reader at a time: an exclusive flock on ROOT itself, so no lock file is written into Docker's directory. */
export async function lockDockerRoot(root: string): Promise<FileHandle> {
  const fh = await open(root, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await sys.lockExclusiveNow(fh.fd, root);
  } catch (e) {
    await fh.close();
    if ((e as DmError).errno === osConstants.errno.EWOULDBLOCK) {
      const why = `the Docker store under ${root} is open in another process (a flock on the directory; /proc/locks names it)`;
      throw new DmError(why, { code: 'ERR_DM_LOCKED', device: root, cause: e });
    }
    throw e;
  }
  return fh;
}

/**
 * Refuse to open Docker's store with the library's own layout: that would
 * write the library's records into Docker's metadata directory and a new
 * base device into its pool.
 */
export async function refuseDockerStore(root: string): Promise<void> {
  const has = (f: string) =>
    stat(join(root, 'metadata', f)).then(
      () => true,
      () => false,
    );
  if (await has('deviceset.json')) return;
  if ((await has(DEVICE_SET_FILE)) || (await has(TRANSACTION_FILE)) || (await has('base'))) {
    throw invalidArg('layout', `${root} holds a store of Docker's devicemapper driver; open it with layout: 'docker' (read-only)`);
  }
}

/** The filesystem on a device, from its superblock (as moby's ProbeFsType, ext4 and xfs only). */
async function probeFs(device: string): Promise<FsType | undefined> {
  const fh = await open(device, 'r');
  try {
    const { buffer: sb, bytesRead } = await fh.read(Buffer.alloc(2048), 0, 2048, 0);
    if (bytesRead >= 4 && sb.toString('latin1', 0, 4) === 'XFSB') return 'xfs';
    if (bytesRead >= 1024 + 58 && sb.readUInt16LE(1024 + 56) === 0xef53) return 'ext4';
    return undefined;
  } finally {
    await fh.close();
  }
}

/**
 * The base filesystem, checked as Docker checked it on start: the base
 * device's UUID must be the one deviceset-metadata recorded (else the pool
 * is not this store's). The base is activated read-only for the look.
 */
async function checkBase(
  pool: ThinPool,
  prefix: string,
  base: DeviceRecord | undefined,
  m: DockerSetMetadata | undefined,
): Promise<FsType> {
  if (!base || !base.initialized || base.deleted) {
    if (m?.fs) return m.fs;
    const why = 'the Docker store has no initialized base device and records no filesystem: there is nothing to mount';
    throw new DmError(why, { code: 'ERR_DM_CORRUPT', device: pool.name });
  }
  const name = `${prefix}-base`;
  const live = await dm.info(name).catch(() => undefined);
  const dev = live?.activeTable ? live : await pool.activate(base.deviceId, { name, size: base.size, readOnly: true });
  try {
    const [uuid, fs] = await Promise.all([filesystemUuid(dev.path), probeFs(dev.path)]);
    if (m?.baseUuid && uuid !== m.baseUuid) {
      const why = `the base device's filesystem UUID is '${uuid}', Docker recorded '${m.baseUuid}'`;
      throw new DmError(`${why}: pool '${pool.name}' does not belong to this store`, { code: 'ERR_DM_CORRUPT', device: name });
    }
    const found = m?.fs ?? fs;
    if (!found) throw new DmError(`the base device holds neither ext4 nor xfs`, { code: 'ERR_DM_CORRUPT', device: name });
    return found;
  } finally {
    if (!live?.activeTable) await dm.remove(name, { retry: true });
  }
}

/** Docker's records behind the RecordStore interface a DeviceSet uses; every change is refused. */
export class DockerStore extends RecordMap implements RecordStore {
  constructor(
    readonly root: string,
    records: DeviceRecord[],
    private readonly set: SetRecord,
    /** The device Docker's start-up rollback would have deleted (left out of the records). */
    readonly rolledBack: string | undefined,
  ) {
    super();
    for (const r of records) this.records.set(r.id, r);
  }

  get dir(): string {
    return join(this.root, 'metadata');
  }

  readSet(): Promise<SetRecord | undefined> {
    return Promise.resolve(this.set);
  }

  readTransaction(): Promise<TransactionRecord | undefined> {
    return Promise.resolve(undefined); // rolled back on open (see rollBack)
  }

  put(): Promise<void> {
    return Promise.reject(readOnlyError('record a device', this.root));
  }

  delete(): Promise<void> {
    return Promise.reject(readOnlyError('delete a device record', this.root));
  }

  writeSet(): Promise<void> {
    return Promise.reject(readOnlyError('write the set record', this.root));
  }

  writeTransaction(): Promise<void> {
    return Promise.reject(readOnlyError('open a transaction', this.root));
  }

  clearTransaction(): Promise<void> {
    return Promise.reject(readOnlyError('close a transaction', this.root));
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** Everything DeviceSet.open needs for a Docker store. */
export interface OpenedDockerStore {
  pool: ThinPool;
  owns: boolean;
  store: DockerStore;
  set: SetRecord;
  lock: FileHandle;
  prefix: string;
  fs: FsType;
  access: SetAccess;
}

/**
 * Open Docker's store under `root` for reading: lock, read the metadata,
 * bring up (or find) the pool, roll back an uncommitted transaction in
 * memory, check the base device. `fs`: the caller's, checked against Docker's.
 */
export async function openDockerStore(root: string, o: { poolName?: string; fs?: FsType }): Promise<OpenedDockerStore> {
  const lock = await lockDockerRoot(root);
  let owned: ThinPool | undefined;
  try {
    const metadata = await readDockerMetadata(root);
    const prefix = await dockerPrefix(root);
    const { pool, owns } = await openDockerPool(root, prefix, o.poolName);
    if (owns) owned = pool;
    const status = await pool.status();
    if (status.mode === 'fail') {
      const file = join(root, 'devicemapper', 'metadata');
      throw new DmError(`pool '${pool.name}' has failed; run thin_check on ${file}`, { code: 'EIO', device: pool.name });
    }
    const { records, rolledBack } = rollBack(metadata, status.transactionId);
    const leaveActive = new Set((await dm.list()).map((d) => d.name).filter((n) => n.startsWith(`${prefix}-`) && n !== pool.name));
    const fs = await checkBase(
      pool,
      prefix,
      records.find((r) => r.id === ''),
      metadata.set,
    );
    if (o.fs !== undefined && o.fs !== fs) throw invalidArg('fs', `the Docker store's base filesystem is ${fs}`);
    const set: SetRecord = { version: 1, poolName: pool.name, fs, nextDeviceId: metadata.set?.nextDeviceId ?? 0 };
    if (metadata.set?.baseUuid) set.baseUuid = metadata.set.baseUuid;
    const store = new DockerStore(root, records, set, rolledBack);
    return { pool, owns, store, set, lock, prefix, fs, access: { readOnly: true, leaveActive } };
  } catch (e) {
    await owned?.destroy().catch(() => undefined);
    await lock.close();
    throw e;
  }
}
