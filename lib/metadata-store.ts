// Persistent records of a DeviceSet, written so that a crash at any instant
// leaves each record either as it was or as it was to be:
//
//   <dir>/deviceset.json     the set: pool, base filesystem, next thin id
//   <dir>/devices.log        every device record ('' is the base device) and
//                            the open transaction, if any: one JSON line per
//                            change, appended and fdatasync'd
//
// deviceset.json is replaced whole (temp file, fsync, rename, fsync of the
// directory). A transaction opens and closes as a line of the log: one
// append and one fdatasync each, where a file replaced took two fsyncs and a
// rename (and write-file-atomic's signal handlers, set and unset for every
// write: 7 ms of each snapshot cycle under UML). Device records live in one append-only log because a set
// may hold tens of thousands of them: opening reads one file instead of one
// per device (10,000 records took 1.76 s as files under UML, where every
// syscall is a trap), and a change is one append and one fdatasync instead of
// a file replaced and two fsyncs. A line a kill cut short has no newline; it
// never finished, so open drops it. The log is rewritten whole (atomically)
// when it holds more than twice the lines it needs.
//
// Sets written before the log (one devices/<id>.json per record and
// base.json) are moved into it on open, as is a transaction.json that
// earlier builds left open.
import { mkdir, open, readdir, readFile, rmdir, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import * as sys from './sys';
import { DmError } from './errors';

/** One device's record in a set (on disk as a JSON line of metadata/devices.log). */
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
  /** The base device (and a snapshotter's snapshot without a parent): false until its filesystem is made. */
  initialized?: boolean;
  /** A snapshotter's snapshot: what containerd's model keeps beside the device. */
  snapshot?: {
    kind: 'active' | 'view' | 'committed';
    labels: Record<string, string>;
    /** ISO times. */
    created: string;
    updated: string;
    /** Committed snapshots: the mapped bytes at commit. */
    usage?: number;
  };
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

/**
 * One line of the log: a record put, one deleted, or both in one line (a
 * rename: old id deleted, new record put); or a transaction opened (`txn`)
 * or closed (`txn: null`).
 */
type Change = { put: DeviceRecord; delete?: string } | { delete: string } | { txn: TransactionRecord | null };

const LOG = 'devices.log';
/** The log is compacted when it holds more lines than this many per live record (and at least MIN_COMPACT lines). */
const SLACK = 2;
const MIN_COMPACT = 64;

/** The read side of a set's records: a map by id, whoever fills it (the log, or another layout's reader). */
export class RecordMap {
  protected readonly records = new Map<string, DeviceRecord>();

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
}

export class MetadataStore extends RecordMap {
  private log: FileHandle | undefined;
  /** The open transaction (the log's last txn line, unless a later one closed it). */
  private transaction: TransactionRecord | undefined;
  /** Lines in the log, and its length in bytes (where a failed append is cut back to). */
  private lines = 0;
  private bytes = 0;
  /** Appends and compactions, one at a time: a compaction replaces the file an append writes to. */
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(readonly dir: string) {
    super();
  }

  /** Open (creating) the store and load every record. */
  static async open(dir: string): Promise<MetadataStore> {
    const store = new MetadataStore(dir);
    await mkdir(dir, { recursive: true });
    await removeTempFiles(dir);
    const text = await readFile(store.logPath, 'utf8').catch(missingIsUndefined);
    if (text === undefined) await store.migrate();
    else {
      await store.replay(text);
      await removeLegacy(dir); // a move into the log that a kill interrupted after the log was written
    }
    try {
      if (store.stale()) await store.compact();
      store.log = await open(store.logPath, 'a');
      await store.migrateTransaction();
    } catch (e) {
      await store.close();
      throw e;
    }
    return store;
  }

  /** The log holds more than SLACK lines per live record (and at least MIN_COMPACT): time to rewrite it. */
  private stale(): boolean {
    return this.lines > Math.max(MIN_COMPACT, SLACK * this.records.size);
  }

  private get logPath(): string {
    return join(this.dir, LOG);
  }

  /** Apply the log's lines; a last line without its newline was cut short by a kill and is cut off the file. */
  private async replay(text: string): Promise<void> {
    const end = text.lastIndexOf('\n') + 1;
    for (let at = 0; at < end;) {
      const nl = text.indexOf('\n', at);
      let change: Change;
      try {
        change = JSON.parse(text.slice(at, nl)) as Change;
      } catch (e) {
        throw corrupt(`${this.logPath} line ${this.lines + 1}`, e);
      }
      this.apply(change);
      this.lines++;
      at = nl + 1;
    }
    this.bytes = Buffer.byteLength(text.slice(0, end));
    if (end < text.length) {
      await withFile(this.logPath, 'r+', async (fh) => {
        await fh.truncate(this.bytes);
        await fh.datasync();
      });
    }
  }

  private apply(c: Change): void {
    if ('txn' in c && (c.txn === null || (typeof c.txn === 'object' && typeof c.txn.id === 'string'))) {
      this.transaction = c.txn ?? undefined;
    } else if ('put' in c && c.put && typeof c.put.id === 'string') {
      if (typeof c.delete === 'string') this.records.delete(c.delete);
      this.records.set(c.put.id, c.put);
    } else if ('delete' in c && typeof c.delete === 'string') this.records.delete(c.delete);
    else
      throw new DmError(`metadata file ${this.logPath} holds a line that is not a record change: ${JSON.stringify(c)}`, {
        code: 'ERR_DM_CORRUPT',
        device: this.logPath,
      });
  }

  /** Move a set written as one file per record into the log: write the log, then remove the files. */
  private async migrate(): Promise<void> {
    const devices = join(this.dir, 'devices');
    const names = (await readdir(devices).catch(missingIsUndefined)) ?? [];
    const files = names.filter((n) => n.endsWith('.json')); // others are temp files of interrupted writes
    const texts = files.length ? await sys.readFiles(devices, files) : [];
    texts.forEach((text, i) => {
      if (text !== null) this.apply({ put: parseJson<DeviceRecord>(text, join(devices, files[i]!)) });
    });
    const base = await readFile(join(this.dir, 'base.json'), 'utf8').catch(missingIsUndefined);
    if (base !== undefined) this.apply({ put: parseJson<DeviceRecord>(base, join(this.dir, 'base.json')) });
    if (this.records.size === 0 && names.length === 0) return;
    await this.compact();
    await removeLegacy(this.dir);
  }

  /** A transaction.json an earlier build left open becomes the log's open transaction: append it, then remove the file. */
  private async migrateTransaction(): Promise<void> {
    const path = join(this.dir, 'transaction.json');
    const t = await readJson<TransactionRecord>(path).catch(missingIsUndefined);
    if (t === undefined) return;
    await this.append({ txn: t });
    await removeDurably(path);
  }

  /** Replace the log with one line per live record (and the open transaction). */
  private async compact(): Promise<void> {
    const lines = [...this.records.values()].map(putLine);
    if (this.transaction) lines.push(line({ txn: this.transaction }));
    const text = lines.join('');
    await writeFileAtomic(this.logPath, text, { fsync: true });
    // Renamed into place: from here appends must go to the new file, never the old one.
    this.lines = lines.length;
    this.bytes = Buffer.byteLength(text);
    const old = this.log;
    if (old) {
      this.log = undefined;
      await old.close().catch(() => undefined);
      this.log = await open(this.logPath, 'a');
    }
    await syncDir(this.dir);
  }

  private append(c: Change): Promise<void> {
    const run = this.queue.then(() => this.appendNow(c));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async appendNow(c: Change): Promise<void> {
    if (!this.log)
      throw new DmError(`the metadata log ${this.logPath} is not open (the set is closed, or reopening it after a compaction failed)`, {
        code: 'ERR_DM_INVALID_ARG',
      });
    const data = Buffer.from(line(c));
    try {
      const { bytesWritten } = await this.log.write(data);
      if (bytesWritten !== data.length)
        throw Object.assign(new Error(`short write to ${this.logPath} (${bytesWritten} of ${data.length} bytes)`), { code: 'ENOSPC' });
      await this.log.datasync();
    } catch (e) {
      await this.log.truncate(this.bytes).catch(() => undefined); // no half line for the next append to follow
      throw e;
    }
    this.bytes += data.length;
    this.lines++;
    this.apply(c);
    // The change is durable; a compaction that fails (no space, say) leaves
    // the longer log as valid as before, and the next change tries again.
    if (this.stale()) await this.compact().catch(() => undefined);
  }

  put(record: DeviceRecord): Promise<void> {
    return this.append({ put: record });
  }

  async delete(id: string): Promise<void> {
    if (this.records.has(id)) await this.append({ delete: id });
  }

  /** Record `id`'s replacement `record` under its own id, in one log line: a crash leaves the old or the new, never both. */
  replace(id: string, record: DeviceRecord): Promise<void> {
    return this.append({ put: record, delete: id });
  }

  /** Close the log (records stay readable in memory; changes are refused). */
  async close(): Promise<void> {
    const log = this.log;
    this.log = undefined;
    await log?.close();
  }

  readSet(): Promise<SetRecord | undefined> {
    return readJson<SetRecord>(join(this.dir, 'deviceset.json')).catch(missingIsUndefined);
  }

  writeSet(set: SetRecord): Promise<void> {
    return writeDurably(join(this.dir, 'deviceset.json'), `${JSON.stringify(set, null, 2)}\n`);
  }

  /** The open transaction, if any. */
  readTransaction(): Promise<TransactionRecord | undefined> {
    return Promise.resolve(this.transaction && { ...this.transaction });
  }

  /** Open transaction `t` (durable when this resolves). */
  writeTransaction(t: TransactionRecord): Promise<void> {
    return this.append({ txn: t });
  }

  /** Close the open transaction (nothing to log when none is open). */
  async clearTransaction(): Promise<void> {
    if (this.transaction) await this.append({ txn: null });
  }
}

/** What a DeviceSet uses of its records: the library's own log, or another layout's reader (lib/device-set/docker-store.ts). */
export type RecordStore = Pick<
  MetadataStore,
  | 'dir'
  | 'get'
  | 'devices'
  | 'all'
  | 'put'
  | 'delete'
  | 'close'
  | 'readSet'
  | 'writeSet'
  | 'readTransaction'
  | 'writeTransaction'
  | 'clearTransaction'
>;

/**
 * Write `set` if its next thin id moved since it was written (at close: the
 * id is a hint that allocation checks, so it is not written per device). A
 * store that cannot write (a read-only layout) keeps what it has.
 */
export async function saveSetIfMoved(store: Pick<MetadataStore, 'readSet' | 'writeSet'>, set: SetRecord): Promise<void> {
  const saved = await store.readSet().catch(() => undefined);
  if (saved && saved.nextDeviceId !== set.nextDeviceId) await store.writeSet(set).catch(() => undefined);
}

const line = (c: Change): string => `${JSON.stringify(c)}\n`;

/** The log line that records `record` (what put() appends): for tools that build a log in bulk, such as the benchmark. */
export const putLine = (record: DeviceRecord): string => line({ put: record });

/** Temp files of replacements a kill interrupted (write-file-atomic names them FILE.HASH). */
async function removeTempFiles(dir: string): Promise<void> {
  const temp = /^(?:deviceset\.json|transaction\.json|devices\.log)\.[0-9a-f]+$/;
  for (const n of await readdir(dir)) if (temp.test(n)) await unlink(join(dir, n)).catch(missingIsUndefined);
}

/** Remove what a set kept before the log: devices/ (records and temp files) and base.json. */
async function removeLegacy(dir: string): Promise<void> {
  const devices = join(dir, 'devices');
  const names = await readdir(devices).catch(missingIsUndefined);
  const base = await unlink(join(dir, 'base.json')).then(
    () => true,
    (e: unknown) => missingIsUndefined(e) ?? false,
  );
  if (names === undefined && !base) return;
  for (const n of names ?? []) await unlink(join(devices, n)).catch(missingIsUndefined);
  if (names !== undefined) await rmdir(devices).catch(missingIsUndefined);
  await syncDir(dir);
}

async function readJson<T>(path: string): Promise<T> {
  return parseJson<T>(await readFile(path, 'utf8'), path);
}

function parseJson<T>(text: string, where: string): T {
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw corrupt(where, e);
  }
}

const corrupt = (where: string, cause: unknown) =>
  new DmError(`metadata file ${where} is not valid JSON; restore it or remove the device set`, {
    code: 'ERR_DM_CORRUPT',
    device: where,
    cause,
  });

function missingIsUndefined(e: unknown): undefined {
  if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
  throw e;
}

/** The rename is durable only once the directory entry is: fsync the directory too. */
function syncDir(dir: string): Promise<void> {
  return withFile(dir, 'r', (fh) => fh.sync());
}

async function withFile(path: string, flags: string, body: (fh: FileHandle) => Promise<void>): Promise<void> {
  const fh = await open(path, flags);
  try {
    await body(fh);
  } finally {
    await fh.close();
  }
}

async function writeDurably(path: string, text: string): Promise<void> {
  await writeFileAtomic(path, text, { fsync: true });
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
