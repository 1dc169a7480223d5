// Removing devices: at once, with bounded retries while busy, deferred to
// the last close (and waiting for that), or forced (an error table first, so
// a wedged holder lets go).
import { setTimeout as sleep } from 'node:timers/promises';
import { native } from './binding';
import { RESUME_HINTS } from './batch';
import { dmCall, type Hints } from './control';
import { resolveRef as resolve, toInfo, type DeviceInfo, type DeviceRef } from './dm-shapes';
import { DmError, invalidArg } from './errors';
import { mapperPath, removeNode } from './nodes';
import { checkBoolean, checkName, checkOptions, checkUint } from './validate';

const F = native.dmFlags;

/** DM_DEV_STATUS of a device (dm.info without dm.ts, which re-exports this file). */
async function info(ref: DeviceRef): Promise<DeviceInfo> {
  const { request, label } = resolve(ref);
  return toInfo(await dmCall('DM_DEV_STATUS', request, label));
}

/** The live table's length in sectors (0: no live table). */
async function tableLength(ref: DeviceRef): Promise<number> {
  const { request, label } = resolve(ref);
  const r = await dmCall('DM_TABLE_STATUS', { ...request, flags: F.DM_STATUS_TABLE_FLAG }, label);
  return (r.targets ?? []).reduce((end, t) => Math.max(end, t.start + t.length), 0);
}

/** Options of dm.remove. */
export interface RemoveOptions {
  /** If the device is open, mark it for removal on last close instead of failing with EBUSY. */
  deferred?: boolean;
  /** Retry EBUSY with bounded back-off: true (about 5 s in all) or { attempts, delayMs }. */
  retry?: boolean | { attempts?: number; delayMs?: number };
  /**
   * First replace the table with an `error` target of the same length and
   * resume (as `dmsetup remove --force`): I/O queued on a suspended device
   * and every later I/O of its holders fails, so a wedged user lets go.
   * Implies `retry: true` unless `retry` is given. A holder that keeps the
   * device open (a mounted filesystem) still makes the removal fail with
   * EBUSY; add `deferred: true` to have it go on its last close.
   */
  force?: boolean;
}

/** What dm.remove did. */
export interface RemoveResult {
  /** True when the device was still open and will go once it is closed. */
  deferred: boolean;
}

const REMOVE_RETRY = { attempts: 25, delayMs: 200 };

/** Remove a device (and its node); see RemoveOptions for busy devices. */
export async function remove(ref: DeviceRef, options?: RemoveOptions): Promise<RemoveResult> {
  const { request, label } = resolve(ref);
  const o = checkOptions<RemoveOptions>(options, 'options', ['deferred', 'retry', 'force']);
  const deferred = checkBoolean(o.deferred, 'options.deferred') ?? false;
  const force = checkBoolean(o.force, 'options.force') ?? false;
  const retry = removeRetry(o.retry ?? force);
  // The node is named after the device: look the name up when given a uuid or number.
  const name = typeof ref === 'string' ? ref : (await info(ref)).name;
  if (force) await failAllIo(ref, label);
  const hints: Hints = { EBUSY: `'${label}' is in use (mounted or open); close it, or pass { deferred: true } or { retry: true }` };
  for (let attempt = 1; ; attempt++) {
    try {
      await dmCall('DM_DEV_REMOVE', { ...request, flags: deferred ? F.DM_DEFERRED_REMOVE : 0 }, label, hints);
      // With DM_DEFERRED_REMOVE the kernel answers success for a busy device
      // and keeps it: ask whether it is still there.
      const still = deferred ? await info(ref).catch(() => undefined) : undefined;
      if (still) return { deferred: true };
      await removeNode(mapperPath(name));
      return { deferred: false };
    } catch (e) {
      if (!(e instanceof DmError) || e.code !== 'EBUSY' || attempt >= retry.attempts) throw e;
      await sleep(Math.min(retry.delayMs, 10 * 2 ** attempt));
    }
  }
}

/** Swap in an `error` table of the device's length and resume, so queued and later I/O fails. */
async function failAllIo(ref: DeviceRef, label: string): Promise<void> {
  const { request } = resolve(ref);
  const length = await tableLength(ref).catch(() => 0);
  // A device with no active table has no I/O to fail.
  if (length === 0) return;
  await dmCall('DM_TABLE_LOAD', { ...request, targets: [{ start: 0, length, type: 'error', params: '' }] }, label);
  try {
    await dmCall('DM_DEV_SUSPEND', request, label, RESUME_HINTS);
  } catch (e) {
    await dmCall('DM_TABLE_CLEAR', request, label).catch(() => undefined); // leave no inactive error table behind
    throw e;
  }
}

function removeRetry(retry: RemoveOptions['retry']): { attempts: number; delayMs: number } {
  if (retry === undefined || retry === false) return { attempts: 1, delayMs: 0 };
  if (retry === true) return REMOVE_RETRY;
  const o = checkOptions<{ attempts: number; delayMs: number }>(retry, 'options.retry', ['attempts', 'delayMs']);
  return {
    attempts: o.attempts === undefined ? REMOVE_RETRY.attempts : checkUint(o.attempts, 'options.retry.attempts', { min: 1, max: 10_000 }),
    delayMs: o.delayMs === undefined ? REMOVE_RETRY.delayMs : checkUint(o.delayMs, 'options.retry.delayMs', { max: 60_000 }),
  };
}

/** Options of dm.waitRemoved. */
export interface WaitRemovedOptions {
  /** Give up with ERR_DM_TIMEOUT after this many ms (default: wait as long as it takes). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/**
 * Resolves once device `name` no longer exists: a deferred removal completes
 * when its last user closes it, on the kernel's workqueue. The kernel raises
 * no event for that, so this looks every 20 ms. Removes the device's node
 * when there is no udev to do it.
 */
export async function waitRemoved(name: string, options?: WaitRemovedOptions): Promise<void> {
  checkName(name);
  const o = checkOptions<WaitRemovedOptions>(options, 'options', ['timeoutMs', 'signal']);
  const timeoutMs = o.timeoutMs === undefined ? Infinity : checkUint(o.timeoutMs, 'options.timeoutMs');
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw invalidArg('options.signal', 'expected an AbortSignal');
  const end = Date.now() + timeoutMs;
  for (;;) {
    throwIfAborted(o.signal, name);
    const still = await info(name).then(
      () => true,
      (e: unknown) => {
        if (e instanceof DmError && e.code === 'ENXIO') return false;
        throw e;
      },
    );
    if (!still) {
      await removeNode(mapperPath(name));
      return;
    }
    if (Date.now() >= end)
      throw new DmError(`'${name}' is still open after ${timeoutMs} ms; its removal stays deferred until its last user closes it`, {
        code: 'ERR_DM_TIMEOUT',
        device: name,
      });
    await sleep(20);
  }
}

/** Take back a deferred removal that has not happened yet. */
export async function cancelDeferredRemove(ref: DeviceRef): Promise<void> {
  const { request, label } = resolve(ref);
  await dmCall('DM_TARGET_MSG', { ...request, message: '@cancel_deferred_remove', sector: 0 }, label, {
    ENXIO: `'${label}' has no deferred removal pending (or does not exist)`,
  });
}

/** An AbortSignal that fired ends a wait with ERR_DM_ABORTED. */
export function throwIfAborted(signal: AbortSignal | undefined, label: string): void {
  if (signal?.aborted) throw new DmError(`wait on '${label}' aborted`, { code: 'ERR_DM_ABORTED', device: label, cause: signal.reason });
}
