// Docker's devicemapper metadata, read and checked, nothing written: the
// per-device JSON files named by hash (device_id, size, transaction_id,
// initialized, deleted), deviceset-metadata, transaction-metadata, and the
// oldest drivers' single devicemapper/json. Field names as moby's
// deviceset.go wrote them. docker-store.ts opens a store with these.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DmError } from '../errors';
import type { FsType } from '../filesystem';
import type { DeviceRecord } from '../metadata-store';
import { MAX_THIN_ID } from '../pool/index';

export const DEVICE_SET_FILE = 'deviceset-metadata';
export const TRANSACTION_FILE = 'transaction-metadata';

/** Docker's deviceset-metadata. */
export interface DockerSetMetadata {
  nextDeviceId: number;
  baseUuid?: string;
  fs?: FsType;
}

/** Docker's transaction-metadata. */
export interface DockerTransaction {
  openTransactionId: number;
  hash: string;
  deviceId: number;
}

/** A Docker metadata file that cannot be read as Docker wrote it. */
export const corrupt = (file: string, why: string, cause?: unknown) =>
  new DmError(`Docker metadata file ${file} ${why}; restore it from a backup or leave the device out`, {
    code: 'ERR_DM_CORRUPT',
    device: file,
    cause,
  });

function parseObject(text: string, file: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw corrupt(file, 'is not valid JSON', e);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw corrupt(file, 'does not hold a JSON object');
  return v as Record<string, unknown>;
}

interface JsonTypes {
  number: number;
  string: string;
  boolean: boolean;
}

/** A field as Go's json.Unmarshal would read it: missing is the zero value, a wrong type is an error. */
function field<K extends keyof JsonTypes>(o: Record<string, unknown>, key: string, type: K, file: string): JsonTypes[K] {
  const v = o[key];
  const zero: JsonTypes = { number: 0, string: '', boolean: false };
  if (v === undefined || v === null) return zero[type];
  if (typeof v !== type || (type === 'number' && (!Number.isSafeInteger(v) || (v as number) < 0))) {
    throw corrupt(file, `has ${JSON.stringify(v)} for '${key}', not ${type === 'number' ? 'a non-negative integer' : `a ${type}`}`);
  }
  return v as JsonTypes[K];
}

/** One device file (ROOT/metadata/<hash>, or an entry of the old json file) as a record; hash '' is the base. */
export function parseDeviceFile(text: string, file: string, hash: string): DeviceRecord {
  return deviceRecord(parseObject(text, file), file, hash);
}

function deviceRecord(o: Record<string, unknown>, file: string, hash: string): DeviceRecord {
  const deviceId = field(o, 'device_id', 'number', file);
  const size = field(o, 'size', 'number', file);
  if (deviceId > MAX_THIN_ID) throw corrupt(file, `has device_id ${deviceId}, above the pool's limit ${MAX_THIN_ID}`);
  const record: DeviceRecord = {
    id: hash,
    deviceId,
    // Docker activated size/512 sectors: a partial sector never was part of the device.
    size: size - (size % 512),
    parent: null,
    transactionId: field(o, 'transaction_id', 'number', file),
  };
  if (field(o, 'deleted', 'boolean', file)) record.deleted = true;
  if (hash === '') record.initialized = field(o, 'initialized', 'boolean', file);
  return record;
}

/** ROOT/metadata/deviceset-metadata. */
export function parseDeviceSetFile(text: string, file: string): DockerSetMetadata {
  const o = parseObject(text, file);
  const m: DockerSetMetadata = { nextDeviceId: field(o, 'next_device_id', 'number', file) };
  const uuid = field(o, 'BaseDeviceUUID', 'string', file);
  const fs = field(o, 'BaseDeviceFilesystem', 'string', file);
  if (uuid) m.baseUuid = uuid;
  if (fs === 'ext4' || fs === 'xfs') m.fs = fs;
  else if (fs) throw corrupt(file, `names the base filesystem '${fs}'; only ext4 and xfs are supported`);
  return m;
}

/** ROOT/metadata/transaction-metadata. */
export function parseTransactionFile(text: string, file: string): DockerTransaction {
  const o = parseObject(text, file);
  return {
    openTransactionId: field(o, 'open_transaction_id', 'number', file),
    hash: field(o, 'device_hash', 'string', file),
    deviceId: field(o, 'device_id', 'number', file),
  };
}

/** What Docker's metadata directory holds, read without writing anything. */
export interface DockerMetadata {
  records: DeviceRecord[];
  set: DockerSetMetadata | undefined;
  transaction: DockerTransaction | undefined;
}

/** ENOENT as undefined, any other error thrown. */
export const missing = (e: unknown): undefined => {
  if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
  throw e;
};

/** A device file's name: as Docker skipped them, temp files ('.tmp…'), '*.migrated' and its two set files are not devices. */
const isDeviceFile = (name: string) =>
  !name.startsWith('.') && !name.endsWith('.migrated') && name !== DEVICE_SET_FILE && name !== TRANSACTION_FILE;

/** Read ROOT/metadata (and an unmigrated ROOT/devicemapper/json) into records. */
export async function readDockerMetadata(root: string): Promise<DockerMetadata> {
  const dir = join(root, 'metadata');
  const entries = await readdir(dir, { withFileTypes: true }).catch((e: unknown) => {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    throw new DmError(`${dir} does not exist: ${root} is not a Docker devicemapper store`, { code: 'ENOENT', device: root });
    throw e;
  });
  const records = new Map<string, DeviceRecord>();
  for (const e of entries) {
    if (!e.isFile() || !isDeviceFile(e.name)) continue;
    const hash = e.name === 'base' ? '' : e.name;
    const file = join(dir, e.name);
    records.set(hash, parseDeviceFile(await readFile(file, 'utf8'), file, hash));
  }
  // The oldest drivers kept every device in one file; Docker moved it into per-device files on start (they win over older files).
  const old = join(root, 'devicemapper', 'json');
  const oldText = await readFile(old, 'utf8').catch(missing);
  if (oldText !== undefined) {
    const devices = parseObject(oldText, old).Devices;
    if (typeof devices !== 'object' || devices === null) throw corrupt(old, "has no 'Devices' object");
    for (const [hash, o] of Object.entries(devices as Record<string, unknown>)) {
      if (typeof o !== 'object' || o === null) throw corrupt(old, `has no object for device '${hash}'`);
      records.set(hash, deviceRecord(o as Record<string, unknown>, old, hash));
    }
  }
  const setFile = join(dir, DEVICE_SET_FILE);
  const setText = await readFile(setFile, 'utf8').catch(missing);
  const txnFile = join(dir, TRANSACTION_FILE);
  const txnText = await readFile(txnFile, 'utf8').catch(missing);
  return {
    records: [...records.values()],
    set: setText === undefined ? undefined : parseDeviceSetFile(setText, setFile),
    transaction: txnText === undefined ? undefined : parseTransactionFile(txnText, txnFile),
  };
}

/**
 * The records as Docker would see them after its start-up rollback: a
 * transaction the pool has not reached (open_transaction_id above the pool's
 * transaction id) loses its device. Returns the hash left out, if any.
 */
export function rollBack(m: DockerMetadata, poolTransactionId: number): { records: DeviceRecord[]; rolledBack?: string } {
  const t = m.transaction;
  if (!t || t.openTransactionId <= poolTransactionId) return { records: m.records };
  return { records: m.records.filter((r) => r.id !== t.hash), rolledBack: t.hash };
}
