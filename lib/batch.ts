// Several device-mapper ioctls in one threadpool trip (a trip costs more
// than most ioctls), as typed steps. Each step carries its error hints and
// its inverse; when step k fails, steps k-1..0 are undone newest first
// (undo failures are ignored and the step's own error is thrown, as in
// undo.ts). The layers above build steps here and never name an ioctl or a
// flag.
import { native, type DmCommand, type DmIoctlReply, type DmIoctlRequest } from './binding';
import { dmCall, dmCallSeq, type Hints } from './control';
import { checkTable, toInfo, type DeviceInfo, type Target } from './dm-shapes';
import type { DmError } from './errors';
import { ensureBlockNode, mapperPath, removeNode } from './nodes';
import type { PoolMessage } from './targets/thin-pool-messages';
import { checkBoolean, checkName, checkUuid, type DmName } from './validate';

const F = native.dmFlags;

/** The replies of the steps of one batch that have run, looked up by step. */
export interface Replies {
  of(step: Step): DmIoctlReply | undefined;
}

export interface Step {
  readonly command: DmCommand;
  readonly request: DmIoctlRequest;
  readonly hints?: Hints;
  /** Undo this step after it succeeded (a later one failed); `replies` holds this step's reply and those before it. */
  readonly undo?: (replies: Replies) => Promise<unknown>;
}

export type Outcome =
  | { readonly ok: true; readonly replies: DmIoctlReply[]; undo(): Promise<void> }
  | {
      readonly ok: false;
      /** Which step failed (its index), and the error it failed with. */
      readonly failed: { readonly index: number; readonly step: Step; readonly error: DmError };
      /** Replies of the steps before the failed one. */
      readonly replies: DmIoctlReply[];
      /** Undo the steps before the failed one, newest first. */
      undo(): Promise<void>;
    };

/** The ioctl calls a batch makes: the real ones, or a test's fake (setBatchCalls). */
export interface BatchCalls {
  seq(steps: Array<{ command: DmCommand; request: DmIoctlRequest; hints?: Hints }>, device: string): ReturnType<typeof dmCallSeq>;
  one(command: DmCommand, request: DmIoctlRequest, device: string, hints?: Hints): Promise<DmIoctlReply>;
}

const kernel: BatchCalls = { seq: dmCallSeq, one: dmCall };
let calls: BatchCalls = kernel;

/** @internal Route batches through `fake` (unit tests of undo paths); undefined restores the kernel. */
export function setBatchCalls(fake: BatchCalls | undefined): void {
  calls = fake ?? kernel;
}

/** Run `steps` in one trip and say how it went; nothing is undone unless the caller calls undo(). */
export async function runSteps(steps: Step[], device: string): Promise<Outcome> {
  const r = await calls.seq(steps, device);
  const done = r.failed ? r.failed.replies : r.replies;
  const undo = async () => {
    const replies: Replies = { of: (s) => done[steps.indexOf(s)] };
    for (let i = done.length - 1; i >= 0; i--) await steps[i]!.undo?.(replies).catch(() => undefined);
  };
  if (!r.failed) return { ok: true, replies: r.replies, undo };
  const index = r.failed.step;
  return { ok: false, failed: { index, step: steps[index]!, error: r.failed.error }, replies: done, undo };
}

/** Run `steps` in one trip; if one fails, undo those before it and throw its error. Resolves with every reply. */
export async function runBatch(steps: Step[], device: string): Promise<DmIoctlReply[]> {
  const o = await runSteps(steps, device);
  if (o.ok) return o.replies;
  await o.undo();
  throw o.failed.error;
}

// ---- step builders ------------------------------------------------------

// The kernel answers EBUSY for a name or uuid already taken.
const createHints = (name: string): Hints => ({ EBUSY: `a device named '${name}' (or with that uuid) already exists` });
export const LOAD_HINTS: Hints = {
  EINVAL: "the kernel rejected the table (dmesg has the target's reason)",
  ENODEV: 'a device the table names does not exist or is not a block device (check its paths and MAJ:MIN numbers)',
};
export const RESUME_HINTS: Hints = { EINVAL: 'the device has no table to resume (load one first)' };

const removeQuietly = (name: string) => calls.one('DM_DEV_REMOVE', { name }, name).catch(() => undefined);

/** DM_DEV_CREATE of an empty device; undone by removing it. */
export function createEmpty(name: DmName, o: { uuid?: string } = {}): Step {
  checkName(name);
  const request: DmIoctlRequest = { name };
  if (o.uuid !== undefined) request.uuid = checkUuid(o.uuid, 'options.uuid');
  return { command: 'DM_DEV_CREATE', request, hints: createHints(name), undo: () => removeQuietly(name) };
}

/**
 * Create, load and resume: a live device in three steps, undone by removing
 * it. Validated here, before any ioctl. finishCreate() makes its node.
 */
export function createDevice(name: DmName, o: { uuid?: string; readOnly?: boolean; table: Target[] }): Step[] {
  const create = createEmpty(name, o);
  const readOnly = checkBoolean(o.readOnly, 'options.readOnly') ?? false;
  const targets = checkTable(o.table, 'options.table');
  return [
    create,
    { command: 'DM_TABLE_LOAD', request: { name, flags: readOnly ? F.DM_READONLY_FLAG : 0, targets }, hints: LOAD_HINTS },
    resume(name),
  ];
}

/** Make the node of a device createDevice() made (`replies`: those of its steps); if that fails, remove the device. */
export async function finishCreate(name: DmName, replies: DmIoctlReply[]): Promise<DeviceInfo> {
  try {
    await ensureBlockNode(mapperPath(name), replies[0]!.dev);
  } catch (e) {
    await removeQuietly(name);
    await removeNode(mapperPath(name)).catch(() => undefined);
    throw e;
  }
  return toInfo(replies.at(-1)!);
}

/** Suspend (flushing, with the filesystem frozen); undone by resuming. */
export function suspend(name: DmName): Step {
  return {
    command: 'DM_DEV_SUSPEND',
    request: { name, flags: F.DM_SUSPEND_FLAG },
    undo: () => calls.one('DM_DEV_SUSPEND', { name }, name),
  };
}

/** Resume (making an inactive table live). Not undone: the steps before it undo the device. */
export function resume(name: DmName): Step {
  return { command: 'DM_DEV_SUSPEND', request: { name }, hints: RESUME_HINTS };
}

/** Read a device's table (DM_TABLE_STATUS with the table flag), by name or by number. */
export function readTable(ref: { name: DmName } | { dev: { major: number; minor: number } }): Step {
  return { command: 'DM_TABLE_STATUS', request: { ...ref, flags: F.DM_STATUS_TABLE_FLAG } };
}

/** Read a device's info (DM_DEV_STATUS). */
export function readInfo(name: DmName): Step {
  return { command: 'DM_DEV_STATUS', request: { name } };
}

/**
 * Remove a device. `restore`: a readTable() step of the same batch, run
 * before this one; undoing puts the device back with that table (and its
 * uuid and read-only flag).
 */
export function remove(name: DmName, o: { hints?: Hints; restore?: Step } = {}): Step {
  const { restore } = o;
  const undo = restore
    ? async (replies: Replies) => {
        const t = replies.of(restore);
        if (!t) return;
        const readOnly = (t.flags & F.DM_READONLY_FLAG) !== 0;
        const again = createDevice(name, { readOnly, table: t.targets ?? [], ...(t.uuid ? { uuid: t.uuid } : {}) });
        await finishCreate(name, await runBatch(again, name));
      }
    : undefined;
  return { command: 'DM_DEV_REMOVE', request: { name }, ...(o.hints ? { hints: o.hints } : {}), ...(undo ? { undo } : {}) };
}

/** A thin-pool message to `pool`; `undo`, if given, is the message that reverses it (create_thin's is delete). */
export function message(pool: DmName, m: PoolMessage, undo?: PoolMessage): Step {
  const step: Step = { command: 'DM_TARGET_MSG', request: { name: pool, message: m.text, sector: 0 }, hints: m.hints };
  if (!undo) return step;
  return { ...step, undo: () => calls.one('DM_TARGET_MSG', { name: pool, message: undo.text, sector: 0 }, pool, undo.hints) };
}
