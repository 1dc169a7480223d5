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
const READ_BATCH = 64;

export class MetadataStore {
  private readonly records = new Map<string, DeviceRecord>();

  private constructor(readonly dir: string) {}

  /** Open (creating) the store and load every record; temp files of interrupted writes are removed. */
  static async open(dir: string): Promise<MetadataStore> {
    const store = new MetadataStore(dir);
    await mkdir(join(dir, 'devices'), { recursive: true });
    const names = await readdir(join(dir, 'devices'));
    // A bounded number of files open at once: a set may hold tens of thousands.
    for (let i = 0; i < names.length; i += READ_BATCH) {
      const loaded = await Promise.all(
        names.slice(i, i + READ_BATCH).map(async (name) => {
          const path = join(dir, 'devices', name);
          if (!name.endsWith('.json')) {
            await unlink(path).catch(() => undefined); // a temp file a crash left behind
            return undefined;
          }
          return readJson<DeviceRecord>(path);
        }),
      );
      for (const r of loaded) if (r) store.records.set(r.id, r);
    }
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
  const text = await readFile(path, 'utf8');
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
