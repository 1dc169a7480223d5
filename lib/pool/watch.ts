// Pool events. A watcher sleeps in dm.wait (DM_DEV_ARM_POLL on the event
// loop, no timer) until the pool's event counter moves, then reads the status
// and emits what changed. The kernel raises a pool event when free data
// blocks reach the low water mark, when free metadata blocks fall below its
// metadata low watermark, and when the pool changes mode.
//
// Auto-extension (LVM's thin_pool_autoextend_threshold/_percent for a
// loop-backed pool) is event-driven too: the watcher sets the table's low
// water mark to the threshold, so the kernel wakes it exactly when use
// crosses it; it then grows the files and reloads, moving the mark along.
import { EventEmitter, on } from 'node:events';
import * as dm from '../dm';
import { DmError, invalidArg } from '../errors';
import { parseSize } from '../size';
import { MAX_METADATA_SIZE, METADATA_BLOCK_SIZE, type ResizeOptions } from './limits';
import type { LoopBacking } from './backing';
import type { PoolAlert, PoolStatus } from './status';

/** What a watcher needs of a pool (ThinPool is one). */
export interface WatchedPool {
  readonly name: string;
  readonly loopBacking: LoopBacking | undefined;
  /** Data block size in bytes. */
  readonly blockSize: number;
  readonly lowWaterMark: number;
  /** The pool's status, parsed. */
  status(): Promise<PoolStatus>;
  /** Grow the pool (autoExtend). */
  resize(options: ResizeOptions): Promise<void>;
}
import { checkOptions, checkUint } from '../validate';

/** When and by how much a watcher grows a loop-backed pool (LVM's autoextend). */
export interface AutoExtendOptions {
  /** Grow when this percentage of the data (or metadata) space is used: 50..99. */
  threshold: number;
  /** Grow by this percentage of the current size: 1..1000. */
  percent: number;
  /** Never grow the data file beyond this size (bytes or a size string; default: no limit). */
  max?: number | string;
}

/** Options of ThinPool.watch. */
export interface WatchOptions {
  /** Grow a loop-backed pool before it fills. */
  autoExtend?: AutoExtendOptions;
  /** Stops the watcher, like close(). */
  signal?: AbortSignal;
}

/** What grew, for the 'extended' event. Sizes in bytes; `ms`: how long the growth took. */
export interface Extension {
  what: 'data' | 'metadata';
  from: number;
  to: number;
  ms: number;
}

/** One item of the watcher's async iterator. */
export type PoolEvent = { type: PoolAlert | 'status' | 'extendLimit'; status: PoolStatus } | ({ type: 'extended' } & Extension);

/** The events a {@link PoolWatcher} emits, with their arguments. */
export interface PoolWatcherEvents {
  /** Every status read: at start and after each pool event. */
  status: [PoolStatus];
  lowWater: [PoolStatus];
  metadataLowWater: [PoolStatus];
  outOfDataSpace: [PoolStatus];
  readOnly: [PoolStatus];
  fail: [PoolStatus];
  needsCheck: [PoolStatus];
  /** autoExtend grew the data or metadata file and reloaded the pool. */
  extended: [Extension];
  /** autoExtend wanted to grow past `max` (emitted once per crossing). */
  extendLimit: [PoolStatus];
  /** An extension failed (watching goes on), or the watch itself failed (it then closes). */
  error: [DmError];
  /** The watcher stopped: close(), the signal, the pool's removal, or an error. */
  close: [];
}

function checkAutoExtend(value: unknown, pool: WatchedPool): (Required<Omit<AutoExtendOptions, 'max'>> & { max: number }) | undefined {
  if (value === undefined) return undefined;
  const o = checkOptions<AutoExtendOptions>(value, 'options.autoExtend', ['threshold', 'percent', 'max']);
  const threshold = checkUint(o.threshold, 'options.autoExtend.threshold', { max: 99 });
  if (threshold < 50) throw invalidArg('options.autoExtend.threshold', `${threshold}: below 50 the pool would grow at half empty`);
  const percent = checkUint(o.percent, 'options.autoExtend.percent', { max: 1000 });
  if (percent < 1) throw invalidArg('options.autoExtend.percent', 'must be at least 1');
  const max = o.max === undefined ? Number.MAX_SAFE_INTEGER : parseSize(o.max, 'options.autoExtend.max');
  if (!pool.loopBacking)
    throw invalidArg('options.autoExtend', `pool '${pool.name}' is on block devices: grow them yourself (e.g. LVM's autoextend)`);
  return { threshold, percent, max };
}

/**
 * Emits the pool's alerts as they appear ({@link PoolAlert} names, each with
 * the status), 'status' on every read, 'extended' / 'extendLimit' with
 * autoExtend, 'error' and 'close'. An alert is emitted again only after it has
 * cleared. Also an async iterator of {@link PoolEvent}s. While open it keeps
 * the process alive; close() releases everything.
 */
export class PoolWatcher extends EventEmitter<PoolWatcherEvents> {
  readonly #abort = new AbortController();
  readonly #settings: ReturnType<typeof checkAutoExtend>;
  readonly #done: Promise<void>;
  #shown = new Set<PoolAlert | 'extendLimit'>();

  /** Start watching `pool` (ThinPool.watch() is the usual way). */
  constructor(
    readonly pool: WatchedPool,
    options?: WatchOptions,
  ) {
    super();
    const o = checkOptions<WatchOptions>(options, 'options', ['autoExtend', 'signal']);
    if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw invalidArg('options.signal', 'expected an AbortSignal');
    this.#settings = checkAutoExtend(o.autoExtend, pool);
    o.signal?.addEventListener('abort', () => this.#abort.abort(), { once: true, signal: this.#abort.signal });
    if (o.signal?.aborted) this.#abort.abort();
    // Start on the next tick, so that listeners added right after watch() see the first status.
    this.#done = new Promise<void>((r) => setImmediate(r)).then(() => this.#run());
  }

  /** Stop watching; resolves once no handle of the watcher is left. */
  async close(): Promise<void> {
    this.#abort.abort();
    await this.#done;
  }

  /** The events as { type, ... } objects, until the watcher closes. */
  async *[Symbol.asyncIterator](): AsyncIterator<PoolEvent> {
    for await (const [event] of on(this, 'event' as never, { close: ['close'] })) yield event as PoolEvent;
  }

  #publish(type: PoolEvent['type'], payload: PoolStatus | Extension): void {
    (this.emit as (e: string, ...a: unknown[]) => boolean)(type, payload);
    (this.emit as (e: string, ...a: unknown[]) => boolean)('event', type === 'extended' ? { type, ...payload } : { type, status: payload });
  }

  async #run(): Promise<void> {
    const signal = this.#abort.signal;
    try {
      if (this.#settings) await this.#placeMark(await this.pool.status());
      while (!signal.aborted) {
        // The counter first, then the status: an event in between ends the wait at once.
        const { eventNr } = await dm.info(this.pool.name);
        const status = await this.pool.status();
        if (signal.aborted) break;
        this.#report(status);
        if (this.#settings && (await this.#extend(status))) continue;
        await dm.wait(this.pool.name, eventNr, { signal });
      }
    } catch (e) {
      const gone = e instanceof DmError && (e.code === 'ENXIO' || e.code === 'ENODEV');
      if (!signal.aborted && !gone)
        this.emit('error', e instanceof DmError ? e : new DmError(String(e), { code: 'EIO', device: this.pool.name, cause: e }));
    } finally {
      this.#abort.abort();
      this.emit('close');
    }
  }

  #report(status: PoolStatus): void {
    this.#publish('status', status);
    const now = new Set(status.alerts);
    for (const alert of status.alerts) if (!this.#shown.has(alert)) this.#publish(alert, status);
    for (const alert of this.#shown) if (alert !== 'extendLimit' && !now.has(alert)) this.#shown.delete(alert);
    for (const alert of now) this.#shown.add(alert);
  }

  /** Low water mark (data blocks) at which the kernel wakes us: the free blocks left at the threshold. */
  #mark(totalDataBlocks: number): number {
    return Math.ceil((totalDataBlocks * (100 - this.#settings!.threshold)) / 100);
  }

  async #placeMark(status: PoolStatus): Promise<void> {
    if (status.mode === 'fail') return;
    const mark = this.#mark(status.totalDataBlocks);
    if (mark !== this.pool.lowWaterMark) await this.pool.resize({ lowWaterMark: mark });
  }

  /** Grow what crossed the threshold; true when something grew (look again at once). */
  async #extend(status: PoolStatus): Promise<boolean> {
    const { threshold, percent, max } = this.#settings!;
    if (status.mode === 'fail' || status.mode === 'ro' || status.needsCheck) return false;
    const over = (used: number, total: number) => total > 0 && used * 100 >= total * threshold;
    const grow = (size: number, unit: number) => Math.ceil((size * (100 + percent)) / 100 / unit) * unit;
    const dataOver = over(status.usedDataBlocks, status.totalDataBlocks) || status.mode === 'out_of_data_space';
    const metaOver = over(status.usedMetadataBlocks, status.totalMetadataBlocks);
    if (!dataOver && !metaOver) {
      this.#shown.delete('extendLimit');
      return false;
    }
    const blockSize = this.pool.blockSize;
    const dataFrom = status.totalDataBlocks * blockSize;
    const metaFrom = status.totalMetadataBlocks * METADATA_BLOCK_SIZE;
    const dataTo = dataOver ? Math.min(grow(dataFrom, blockSize), Math.floor(max / blockSize) * blockSize) : dataFrom;
    const metaTo = metaOver ? Math.min(grow(metaFrom, METADATA_BLOCK_SIZE), MAX_METADATA_SIZE) : metaFrom;
    if (dataTo <= dataFrom && metaTo <= metaFrom) {
      if (!this.#shown.has('extendLimit')) {
        this.#shown.add('extendLimit');
        this.#publish('extendLimit', status);
      }
      return false;
    }
    const t0 = performance.now();
    try {
      await this.pool.resize({
        ...(dataTo > dataFrom ? { dataSize: dataTo } : {}),
        ...(metaTo > metaFrom ? { metadataSize: metaTo } : {}),
        lowWaterMark: this.#mark(dataTo / blockSize),
      });
    } catch (e) {
      this.emit('error', e instanceof DmError ? e : new DmError(String(e), { code: 'EIO', device: this.pool.name, cause: e }));
      return false;
    }
    const ms = Math.round(performance.now() - t0);
    if (dataTo > dataFrom) this.#publish('extended', { what: 'data', from: dataFrom, to: dataTo, ms });
    if (metaTo > metaFrom) this.#publish('extended', { what: 'metadata', from: metaFrom, to: metaTo, ms });
    return true;
  }
}
