// The path every device-mapper ioctl takes: one shared control fd, the
// per-command buffer-size memory, DmError mapping and NODE_DEBUG tracing.
import { open as openFd } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { debuglog, promisify } from 'node:util';
import { native, type DmCommand, type DmIoctlReply, type DmIoctlRequest } from './binding';
import { DmError, errnoOf, fromNative } from './errors';

export const DM_CONTROL = '/dev/mapper/control';

const nodeDebug = debuglog('devmapper');
let forced = false;

/**
 * Trace every ioctl to stderr, as NODE_DEBUG=devmapper does (Node reads
 * NODE_DEBUG only at start-up; the CLI's --debug calls this instead).
 */
export function enableTrace(): void {
  forced = true;
}

const trace = Object.defineProperty(
  (format: string, ...args: unknown[]) =>
    forced ? console.error(`DEVMAPPER ${process.pid}: ${format}`, ...args) : nodeDebug(format, ...args),
  'enabled',
  { get: () => forced || nodeDebug.enabled }, // a getter: NODE_DEBUG is looked at lazily
) as ((format: string, ...args: unknown[]) => void) & { readonly enabled: boolean };

function controlError(e: unknown): DmError {
  const code = errnoOf(e as NodeJS.ErrnoException);
  const message =
    code === 'ENOENT'
      ? `${DM_CONTROL} is missing: this kernel has no device-mapper loaded (modprobe dm-mod), or run inside the VM (npm run vm -- CMD)`
      : code === 'EACCES' || code === 'EPERM'
        ? `cannot open ${DM_CONTROL}: device-mapper needs CAP_SYS_ADMIN; run as root`
        : `cannot open ${DM_CONTROL}: ${code}`;
  return new DmError(message, { code: code === 'ENOENT' ? 'ERR_DM_UNAVAILABLE' : code, syscall: 'open', device: DM_CONTROL, cause: e });
}

/** Open a fresh control fd (arm-poll state is per open file); the caller closes it. */
export async function openControl(): Promise<FileHandle> {
  try {
    return await open(DM_CONTROL, 'r+');
  } catch (e) {
    throw controlError(e);
  }
}

// Shared for the life of the process: a plain fd, which nothing closes behind
// our back (a FileHandle is closed, with a warning, once it is garbage).
let control: Promise<number> | undefined;

function sharedControl(): Promise<number> {
  control ??= promisify(openFd)(DM_CONTROL, 'r+').catch((e: unknown) => {
    control = undefined; // let a later call try again (e.g. after modprobe)
    throw controlError(e);
  });
  return control;
}

// Replies that needed a bigger buffer last time start at that size next time,
// so a large listing grows the buffer once per process, not once per call.
const bufferSizes = new Map<DmCommand, number>();

export type Hints = Partial<Record<string, string>>;

/** Issue one device-mapper ioctl on the shared control fd. */
export async function dmCall(command: DmCommand, request: DmIoctlRequest, device?: string, hints?: Hints): Promise<DmIoctlReply> {
  return dmCallOn(await sharedControl(), command, request, device, hints);
}

/** Issue one device-mapper ioctl on a given control fd. */
export async function dmCallOn(
  fd: number,
  command: DmCommand,
  request: DmIoctlRequest,
  device?: string,
  hints?: Hints,
): Promise<DmIoctlReply> {
  const bufferSize = bufferSizes.get(command);
  const reply = await traced(command, device, () => native.dmIoctl(fd, command, bufferSize ? { ...request, bufferSize } : request), hints);
  if (reply.growths > 0) {
    bufferSizes.set(command, reply.bufferSize);
    trace('%s reply buffer grew %dx to %d bytes', command, reply.growths, reply.bufferSize);
  }
  return reply;
}

export interface SeqStep {
  command: DmCommand;
  request: DmIoctlRequest;
  hints?: Hints;
}

export type SeqResult =
  | { replies: DmIoctlReply[]; failed?: undefined }
  | {
      replies?: undefined;
      failed: { step: number; error: DmError; /** Replies of the steps before the failed one. */ replies: DmIoctlReply[] };
    };

/**
 * Several ioctls in order, in one threadpool trip (a trip costs more than
 * most ioctls). Stops at the first failure and says which step it was, with
 * the replies before it, so the caller can undo those steps.
 */
export async function dmCallSeq(steps: SeqStep[], device?: string): Promise<SeqResult> {
  const fd = await sharedControl();
  const what = steps.map((s) => s.command).join('+');
  const started = trace.enabled ? process.hrtime.bigint() : 0n;
  try {
    const replies = await native.dmIoctlSeq(
      fd,
      steps.map((s) => {
        const bufferSize = bufferSizes.get(s.command);
        return [s.command, bufferSize ? { ...s.request, bufferSize } : s.request];
      }),
    );
    if (trace.enabled) trace('%s %s ok %sms', what, device ?? '', elapsed(started));
    return { replies };
  } catch (e) {
    const step = (e as { step?: unknown }).step;
    if (typeof step !== 'number') throw fromNative(e, device);
    const error = fromNative(e, device, steps[step]?.hints);
    if (trace.enabled) trace('%s %s failed at %s %sms: %s', what, device ?? '', steps[step]?.command, elapsed(started), error.code);
    const replies = (e as { replies?: DmIoctlReply[] }).replies ?? [];
    return { failed: { step, error, replies } };
  }
}

/** Time a native call under NODE_DEBUG=devmapper and map its failure. */
export async function traced<T>(what: string, device: string | undefined, call: () => Promise<T>, hints?: Hints): Promise<T> {
  const started = trace.enabled ? process.hrtime.bigint() : 0n;
  try {
    return traceOk(what, device, started, await call());
  } catch (e) {
    throw traceFailure(what, device, started, e, hints);
  }
}

/** traced() for a call that runs on the JS thread (mknod in /dev, which is in memory). */
export function tracedSync<T>(what: string, device: string | undefined, call: () => T, hints?: Hints): T {
  const started = trace.enabled ? process.hrtime.bigint() : 0n;
  try {
    return traceOk(what, device, started, call());
  } catch (e) {
    throw traceFailure(what, device, started, e, hints);
  }
}

function traceOk<T>(what: string, device: string | undefined, started: bigint, result: T): T {
  if (trace.enabled) trace('%s %s ok %sms', what, device ?? '', elapsed(started));
  return result;
}

function traceFailure(what: string, device: string | undefined, started: bigint, e: unknown, hints: Hints | undefined): DmError {
  const err = fromNative(e, device, hints);
  if (trace.enabled) trace('%s %s failed %sms: %s', what, device ?? '', elapsed(started), err.code);
  return err;
}

/** Fields a native failure may carry beside its errno. */
type NativeFields = { syscall?: string; detail?: string; step?: number; number?: number };

/**
 * traced(), resolving with the failure instead of throwing it, together with
 * the native error's own fields (which step failed, a loop number, a detail)
 * that the caller needs to decide what to do next.
 */
export async function tracedOutcome<T>(
  what: string,
  device: string | undefined,
  call: () => Promise<T>,
  hints?: Hints,
): Promise<{ value: T; error?: undefined } | { error: DmError; native: NativeFields }> {
  let raw: unknown;
  try {
    const value = await traced(what, device, () => call().catch((e: unknown) => Promise.reject((raw = e))), hints);
    return { value };
  } catch (error) {
    return { error: error as DmError, native: (typeof raw === 'object' && raw !== null ? raw : {}) as NativeFields };
  }
}

function elapsed(started: bigint): string {
  return (Number(process.hrtime.bigint() - started) / 1e6).toFixed(3);
}
