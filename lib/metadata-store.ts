// Persistent records of a DeviceSet, one JSON file each, written so that a
// crash at any instant leaves either the old or the new file: temp file,
// fsync, rename (write-file-atomic), then fsync of the directory.
//
//   <dir>/deviceset.json     the set: pool, base filesystem, next thin id
//   <dir>/transaction.json   the open transaction, if any
//   <dir>/devices/<id>.json  one per device (the base device is 'base.json' in <dir>)
import { mkdir, open, readdir, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import { native } from './binding';
import { traced } from './control';
import { DmError } from './errors';

export interface DeviceRecord {
  /** The caller's id ('' for the base device). */
  id: string;
  /** Thin device id in the pool. */
  deviceId: number;
  /** Bytes. */
  size: number;
  /** Id of the device this is a snapshot of ('' = base, null = none). */
  parent: string | null;
  /** Pool transaction id that created it. */
  transactionId: number;
  /** Delete is pending (deferred deletion: the thin device was busy). */
  deleted?: boolean;
  /** The base device only: false until its filesystem is made. */
  initialized?: boolean;
}

export interface SetRecord {
  version: 1;
  poolName: string;
  /** Filesystem of the base device and its UUID, checked on every open. */
  fs: 'ext4' | 'xfs';
  baseUuid?: string;
  /** Next thin id to try. */
  nextDeviceId: number;
}

export interface TransactionRecord {
  /** The pool transaction id this transaction moves the pool to. */
  openTransactionId: number;
  op: 'create' | 'delete';
  id: string;
  deviceId: number;
}

const BASE_FILE = 'base.json';

export class MetadataStore {
  private readonly records = new Map<string, DeviceRecord>();

  private constructor(readonly dir: string) {}

  /** Open (creating) the store and load every record; temp files of interrupted writes are removed. */
  static async open(dir: string): Promise<MetadataStore> {
    const store = new MetadataStore(dir);
    await mkdir(join(dir, 'devices'), { recursive: true });
    const devices = join(dir, 'devices');
    const names = await readdir(devices);
    for (const name of names.filter((n) => !n.endsWith('.json'))) await unlink(join(devices, name)).catch(() => undefined); // temp files a crash left
    // All records in one native call: a set may hold tens of thousands, and a
    // threadpool trip per file costs more than reading it.
    const files = names.filter((n) => n.endsWith('.json'));
    const texts = await traced('readFiles', devices, () => native.readFiles(devices, files));
    texts.forEach((text, i) => {
      if (text === null) return; // deleted since the listing
      const r = parseJson<DeviceRecord>(text, join(devices, files[i]!));
      store.records.set(r.id, r);
    });
    const base = await readJson<DeviceRecord>(join(dir, BASE_FILE)).catch(missingIsUndefined);
    if (base) store.records.set('', base);
    return store;
  }

  get(id: string): DeviceRecord | undefined {
    return this.records.get(id);
  }

  /** Every record but the base device's. */
  devices(): DeviceRecord[] {
    return [...this.records.values()].filter((r) => r.id !== '');
  }

  /** Every record including the base device's. */
  all(): DeviceRecord[] {
    return [...this.records.values()];
  }

  private recordPath(id: string): string {
    return id === '' ? join(this.dir, BASE_FILE) : join(this.dir, 'devices', `${id}.json`);
  }

  async put(record: DeviceRecord): Promise<void> {
    await writeDurably(this.recordPath(record.id), record);
    this.records.set(record.id, record);
  }

  async delete(id: string): Promise<void> {
    await removeDurably(this.recordPath(id));
    this.records.delete(id);
  }

  readSet(): Promise<SetRecord | undefined> {
    return readJson<SetRecord>(join(this.dir, 'deviceset.json')).catch(missingIsUndefined);
  }

  writeSet(set: SetRecord): Promise<void> {
    return writeDurably(join(this.dir, 'deviceset.json'), set);
  }

  readTransaction(): Promise<TransactionRecord | undefined> {
    return readJson<TransactionRecord>(join(this.dir, 'transaction.json')).catch(missingIsUndefined);
  }

  writeTransaction(t: TransactionRecord): Promise<void> {
    return writeDurably(join(this.dir, 'transaction.json'), t);
  }

  clearTransaction(): Promise<void> {
    return removeDurably(join(this.dir, 'transaction.json'));
  }
}

async function readJson<T>(path: string): Promise<T> {
  return parseJson<T>(await readFile(path, 'utf8'), path);
}

function parseJson<T>(text: string, path: string): T {
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new DmError(`metadata file ${path} is not valid JSON; restore it or remove the device set`, { code: 'ERR_DM_CORRUPT', device: path, cause: e });
  }
}

function missingIsUndefined(e: unknown): undefined {
  if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
  throw e;
}

/** The rename is durable only once the directory entry is: fsync the directory too. */
async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function writeDurably(path: string, value: unknown): Promise<void> {
  await writeFileAtomic(path, `${JSON.stringify(value, null, 2)}\n`, { fsync: true });
  await syncDir(path.slice(0, path.lastIndexOf('/')));
}

async function removeDurably(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  await syncDir(path.slice(0, path.lastIndexOf('/')));
}
