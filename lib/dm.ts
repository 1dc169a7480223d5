// One typed async function per device-mapper ioctl (<linux/dm-ioctl.h>);
// removal and its variants in dm-remove.ts, re-exported here.
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { native, type DevNumber, type DmIoctlReply, type DmIoctlRequest } from './binding';
import * as batch from './batch';
import { LOAD_HINTS, RESUME_HINTS } from './batch';
import { dmCall, dmCallOn, openControl, tracedSync } from './control';
import { throwIfAborted } from './dm-remove';
import { checkTable, resolveRef as resolve, toInfo, type DeviceInfo, type DeviceRef, type Target } from './dm-shapes';
import { DmError, errnoOf, invalidArg } from './errors';
import { ensureBlockNode, mapperPath, pruneMapperNodes, renameNode } from './nodes';
import * as sys from './sys';
import { checkBoolean, checkLine, checkName, checkOptions, checkTargetType, checkU32, checkUint, checkUuid } from './validate';

const F = native.dmFlags;

export type { DeviceInfo, DeviceRef, Target } from './dm-shapes';
export { cancelDeferredRemove, remove, waitRemoved, type RemoveOptions, type RemoveResult, type WaitRemovedOptions } from './dm-remove';

/** The kernel driver's interface version (DM_VERSION). */
export interface Version {
  major: number;
  minor: number;
  patch: number;
}

/** A loaded target type and its version (DM_LIST_VERSIONS). */
export interface TargetVersion {
  name: string;
  version: [number, number, number];
}

/** One device of DM_LIST_DEVICES: name, uuid, number and event counter. */
export interface ListedDevice {
  name: string;
  uuid?: string;
  major: number;
  minor: number;
  eventNr: number;
}

/** The kernel driver's interface version. */
export async function version(): Promise<Version> {
  const r = await dmCall('DM_VERSION', {});
  return { major: r.version[0], minor: r.version[1], patch: r.version[2] };
}

/** Every target type the kernel has loaded, with its version. */
export async function targets(): Promise<TargetVersion[]> {
  return (await dmCall('DM_LIST_VERSIONS', {})).versions ?? [];
}

/** One target type's version; the kernel loads its module if needed. ENOENT-like EINVAL when unknown. */
export async function targetVersion(type: string): Promise<[number, number, number]> {
  checkTargetType(type);
  const r = await dmCall('DM_GET_TARGET_VERSION', { name: type }, type, {
    EINVAL: `the kernel has no '${type}' target (is its module available?)`,
  });
  const v = r.versions?.[0];
  if (!v)
    throw new DmError(`DM_GET_TARGET_VERSION returned no version for '${type}'`, {
      code: 'ERR_DM_DECODE',
      ioctl: 'DM_GET_TARGET_VERSION',
      device: type,
    });
  return v.version;
}

/** Every device-mapper device. Without udev, also drops nodes of devices that are gone. */
export async function list(): Promise<ListedDevice[]> {
  const r = await dmCall('DM_LIST_DEVICES', { flags: F.DM_UUID_FLAG });
  const devices = (r.names ?? []).map((n) => {
    const d: ListedDevice = { name: n.name, major: n.major, minor: n.minor, eventNr: n.eventNr ?? 0 };
    if (n.uuid) d.uuid = n.uuid;
    return d;
  });
  await pruneMapperNodes(new Set(devices.map((d) => d.name)));
  return devices;
}

/** Options of dm.create. */
export interface CreateOptions {
  uuid?: string;
  /** Load the table read-only. */
  readOnly?: boolean;
  /** With a table the device is also loaded and resumed; if that fails it is removed again. */
  table?: Target[];
}

/** Create a device (and its /dev/mapper node); with `table`, load and resume it too. */
export async function create(rawName: string, options?: CreateOptions): Promise<DeviceInfo> {
  const name = checkName(rawName);
  const o = checkOptions<CreateOptions>(options, 'options', ['uuid', 'readOnly', 'table']);
  if (o.table === undefined) {
    checkBoolean(o.readOnly, 'options.readOnly');
    const step = batch.createEmpty(name, o.uuid === undefined ? {} : { uuid: o.uuid });
    return batch.finishCreate(name, await batch.runBatch([step], name));
  }
  // Create, load and resume in one trip to the threadpool; undone if a step fails.
  return batch.finishCreate(name, await batch.runBatch(batch.createDevice(name, { ...o, table: o.table }), name));
}

/** Load `table` into the device's inactive slot; `resume` makes it live. */
export async function load(ref: DeviceRef, table: Target[], options?: { readOnly?: boolean }): Promise<void> {
  const { request, label } = resolve(ref);
  const o = checkOptions<{ readOnly: boolean }>(options, 'options', ['readOnly']);
  const targets = checkTable(table);
  const flags = checkBoolean(o.readOnly, 'options.readOnly') ? F.DM_READONLY_FLAG : 0;
  await dmCall('DM_TABLE_LOAD', { ...request, flags, targets }, label, LOAD_HINTS);
}

/** Drop the inactive table. */
export async function clear(ref: DeviceRef): Promise<void> {
  const { request, label } = resolve(ref);
  await dmCall('DM_TABLE_CLEAR', request, label);
}

/** Options of dm.suspend. */
export interface SuspendOptions {
  /** Do not flush queued I/O (needed to suspend a full thin pool). */
  noFlush?: boolean;
  /** Do not freeze a mounted filesystem first. */
  skipLockfs?: boolean;
}

/** Suspend I/O (DM_DEV_SUSPEND): flushed and the filesystem frozen unless the options say otherwise. */
export async function suspend(ref: DeviceRef, options?: SuspendOptions): Promise<void> {
  const { request, label } = resolve(ref);
  const o = checkOptions<SuspendOptions>(options, 'options', ['noFlush', 'skipLockfs']);
  let flags = F.DM_SUSPEND_FLAG;
  if (checkBoolean(o.noFlush, 'options.noFlush')) flags |= F.DM_NOFLUSH_FLAG;
  if (checkBoolean(o.skipLockfs, 'options.skipLockfs')) flags |= F.DM_SKIP_LOCKFS_FLAG;
  await dmCall('DM_DEV_SUSPEND', { ...request, flags }, label);
}

/** Resume I/O; an inactive table, if loaded, becomes the live one. */
export async function resume(ref: DeviceRef): Promise<void> {
  const { request, label } = resolve(ref);
  await resumeDevice(request, label);
}

/** DM_DEV_SUSPEND without the suspend flag; the reply carries the device's status. */
function resumeDevice(request: DmIoctlRequest, label: string): Promise<DmIoctlReply> {
  return dmCall('DM_DEV_SUSPEND', request, label, RESUME_HINTS);
}

/** The byte range dm.discard discards. */
export interface DiscardOptions {
  /** Byte offset of the range (default 0); a multiple of 512. */
  offset?: number;
  /** Bytes to discard (default: to the end of the device); a multiple of 512. */
  length?: number;
}

/**
 * Discard a byte range of a device (BLKDISCARD), as containerd's
 * DiscardBlocks does before deleting a snapshot. On a thin device the pool
 * unmaps the blocks it covers wholly, and, with discard passdown (the
 * default), a loop-backed pool's sparse data file gives that space back to
 * the filesystem that holds it. Resolves with the bytes discarded.
 */
export async function discard(ref: DeviceRef, options?: DiscardOptions): Promise<{ offset: number; length: number }> {
  const { label } = resolve(ref);
  const o = checkOptions<DiscardOptions>(options, 'options', ['offset', 'length']);
  const offset = o.offset === undefined ? 0 : checkUint(o.offset, 'options.offset');
  const given = o.length === undefined ? undefined : checkUint(o.length, 'options.length', { min: 1 });
  if (offset % 512 !== 0) throw invalidArg('options.offset', `${offset} is not a multiple of 512`);
  if (given !== undefined && given % 512 !== 0) throw invalidArg('options.length', `${given} is not a multiple of 512`);
  const dev = await info(ref);
  if (!dev.activeTable) throw new DmError(`'${label}' has no active table: nothing to discard`, { code: 'ENXIO', device: label });
  const size = (await table(ref)).reduce((end, t) => Math.max(end, t.start + t.length), 0) * 512;
  const length = given ?? size - offset;
  if (offset + length > size || length <= 0) {
    throw invalidArg('options', `offset ${offset} + length ${length} is past the end of '${label}' (${size} bytes)`);
  }
  await ensureBlockNode(dev.path, dev);
  await withDeviceFd(dev.path, label, (fd) =>
    sys.blockDiscard(fd, offset, length, label, {
      EOPNOTSUPP: `'${label}' does not take discards (its target, e.g. zero or error, or the device under it does not support them)`,
    }),
  );
  return { offset, length };
}

/** Open a device node for writing, run `body` with its fd, close it; open errors as DmError. */
async function withDeviceFd<T>(path: string, label: string, body: (fd: number) => Promise<T>): Promise<T> {
  let fh: FileHandle;
  try {
    fh = await open(path, constants.O_WRONLY);
  } catch (e) {
    const code = errnoOf(e as NodeJS.ErrnoException);
    throw new DmError(`cannot open ${path} for '${label}': ${code}`, { code, syscall: 'open', device: label, cause: e });
  }
  try {
    return await body(fh.fd);
  } finally {
    await fh.close();
  }
}

/**
 * Remove every device-mapper device that is not in use, on the whole system.
 * Meant for test VMs and recovery; with `deferred`, busy ones go on last close.
 */
export async function removeAll(options?: { deferred?: boolean }): Promise<void> {
  const o = checkOptions<{ deferred: boolean }>(options, 'options', ['deferred']);
  await dmCall('DM_REMOVE_ALL', { flags: checkBoolean(o.deferred, 'options.deferred') ? F.DM_DEFERRED_REMOVE : 0 });
  await list(); // drops the nodes of what went
}

/** Rename device `name` to `newName` (DM_DEV_RENAME), its /dev/mapper node with it. */
export async function rename(name: string, newName: string): Promise<void> {
  checkName(name);
  checkName(newName, 'newName');
  const r = await dmCall('DM_DEV_RENAME', { name, payload: newName }, name, { EBUSY: `a device named '${newName}' already exists` });
  await renameNode(mapperPath(name), mapperPath(newName), r.dev);
}

/** A /dev/mapper node as dm.mknodes left it. */
export interface MapperNode {
  name: string;
  path: string;
  major: number;
  minor: number;
}

/**
 * Make the /dev/mapper node of device `name` (or of every device) right, as
 * `dmsetup mknodes` does: a missing node is made, one of another device
 * replaced; without a name, and without udev, nodes of devices that are gone
 * are removed too.
 */
export async function mknodes(name?: string): Promise<MapperNode[]> {
  const devices = name === undefined ? await list() : [await info(checkName(name))];
  const nodes = devices.map((d) => ({ name: d.name, path: mapperPath(d.name), major: d.major, minor: d.minor }));
  for (const n of nodes) await ensureBlockNode(n.path, n);
  return nodes;
}

/** Give a device that has none a uuid (the kernel refuses to change an existing one). */
export async function setUuid(name: string, uuid: string): Promise<void> {
  checkName(name);
  checkUuid(uuid);
  await dmCall('DM_DEV_RENAME', { name, payload: uuid, flags: F.DM_UUID_FLAG }, name, {
    EINVAL: `'${name}' already has a uuid; the kernel sets it only once`,
    EBUSY: 'another device already has that uuid',
  });
}

/** The device's state (DM_DEV_STATUS); ENXIO when there is no such device. */
export async function info(ref: DeviceRef): Promise<DeviceInfo> {
  const { request, label } = resolve(ref);
  return toInfo(await dmCall('DM_DEV_STATUS', request, label));
}

/** Options of dm.table and dm.status. */
export interface TableOptions {
  /** Read the inactive (loaded, not yet resumed) table instead of the live one. */
  inactive?: boolean;
}

async function tableStatus(ref: DeviceRef, options: unknown, extra: number, known: string[]): Promise<Target[]> {
  const { request, label } = resolve(ref);
  const o = checkOptions<TableOptions & { noFlush: boolean }>(options, 'options', known);
  let flags = extra;
  if (checkBoolean(o.inactive, 'options.inactive')) flags |= F.DM_QUERY_INACTIVE_TABLE_FLAG;
  if (checkBoolean(o.noFlush, 'options.noFlush')) flags |= F.DM_NOFLUSH_FLAG;
  return (await dmCall('DM_TABLE_STATUS', { ...request, flags }, label)).targets ?? [];
}

/** The table as loaded: one Target per line. */
export function table(ref: DeviceRef, options?: TableOptions): Promise<Target[]> {
  return tableStatus(ref, options, F.DM_STATUS_TABLE_FLAG, ['inactive']);
}

/**
 * Each target's status line (`params` holds the status text).
 * `noFlush` skips the metadata commit a thin pool otherwise does first.
 */
export function status(ref: DeviceRef, options?: TableOptions & { noFlush?: boolean }): Promise<Target[]> {
  return tableStatus(ref, options, 0, ['inactive', 'noFlush']);
}

/** The devices this device's live table uses. */
export async function deps(ref: DeviceRef): Promise<DevNumber[]> {
  const { request, label } = resolve(ref);
  return (await dmCall('DM_TABLE_DEPS', request, label)).deps ?? [];
}

/** Send a message to the target at `sector` (default 0); resolves with its reply text ('' if none). */
export async function message(ref: DeviceRef, text: string, options?: { sector?: number }): Promise<string> {
  const { request, label } = resolve(ref);
  checkLine(text, 'message', { allowEmpty: false });
  const o = checkOptions<{ sector: number }>(options, 'options', ['sector']);
  const sector = o.sector === undefined ? 0 : checkUint(o.sector, 'options.sector');
  const r = await dmCall('DM_TARGET_MSG', { ...request, message: text, sector }, label, {
    EINVAL: `the target rejected the message '${text}' (dmesg has its reason)`,
  });
  return r.message ?? '';
}

/** CHS geometry for dm.setGeometry (what HDIO_GETGEO reports). */
export interface Geometry {
  cylinders: number;
  heads: number;
  sectors: number;
  start: number;
}

/** Set the CHS geometry reported by HDIO_GETGEO. */
export async function setGeometry(ref: DeviceRef, geometry: Geometry): Promise<void> {
  const { request, label } = resolve(ref);
  const g = checkOptions<Geometry>(geometry, 'geometry', ['cylinders', 'heads', 'sectors', 'start']);
  const payload = [
    checkUint(g.cylinders, 'geometry.cylinders', { max: 0xffff }),
    checkUint(g.heads, 'geometry.heads', { max: 0xff }),
    checkUint(g.sectors, 'geometry.sectors', { max: 0xff }),
    checkUint(g.start, 'geometry.start', { max: 0xffffffff }),
  ].join(' ');
  await dmCall('DM_DEV_SET_GEOMETRY', { ...request, payload }, label);
}

/** Options of dm.wait. */
export interface WaitOptions {
  signal?: AbortSignal;
  /**
   * 'poll' (default): DM_DEV_ARM_POLL and poll(2) on the libuv loop; holds no
   * thread. 'ioctl': the blocking DM_DEV_WAIT on a threadpool thread (for
   * kernels before arm-poll; cannot be aborted).
   */
  method?: 'poll' | 'ioctl';
}

/** Resolve with the device's event number once it differs from `eventNr`. */
export async function wait(ref: DeviceRef, eventNr: number, options?: WaitOptions): Promise<number> {
  const { request, label } = resolve(ref);
  checkU32(eventNr, 'eventNr');
  const o = checkOptions<WaitOptions>(options, 'options', ['signal', 'method']);
  const method = o.method ?? 'poll';
  if (method !== 'poll' && method !== 'ioctl') throw invalidArg('options.method', `expected 'poll' or 'ioctl', got ${String(method)}`);
  const signal = o.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidArg('options.signal', 'expected an AbortSignal');
  if (method === 'ioctl') {
    if (signal) throw invalidArg('options.signal', "method 'ioctl' blocks in the kernel and cannot be aborted");
    return devWait(request, eventNr, label);
  }
  throwIfAborted(signal, label);
  const fh = await openControl();
  const watcher = await Promise.resolve()
    .then(() => tracedSync('uv_poll_init', label, () => new native.FdWatcher(fh.fd)))
    .catch(async (e: unknown) => {
      await fh.close();
      throw e;
    });
  try {
    let pinned = request;
    for (;;) {
      // Arm first, then look: an event between the two still wakes the poll.
      try {
        await dmCallOn(fh.fd, 'DM_DEV_ARM_POLL', {}, label);
      } catch (e) {
        // Kernels before device-mapper 4.37 have no arm-poll: block in DM_DEV_WAIT instead.
        if (e instanceof DmError && (e.code === 'ENOTTY' || e.code === 'EINVAL') && !signal) return devWait(pinned, eventNr, label);
        throw e;
      }
      const now = await dmCall('DM_DEV_STATUS', pinned, label);
      if (now.eventNr !== eventNr) return now.eventNr;
      pinned = { dev: now.dev }; // follow the device through renames
      await readable(watcher, signal, label);
    }
  } finally {
    watcher.close();
    await fh.close();
  }
}

async function devWait(request: DmIoctlRequest, eventNr: number, label: string): Promise<number> {
  return (await dmCall('DM_DEV_WAIT', { ...request, eventNr }, label)).eventNr;
}

function readable(watcher: InstanceType<typeof native.FdWatcher>, signal: AbortSignal | undefined, label: string): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    // Aborted while the arm-poll or status call was in flight: an 'abort'
    // listener added now would never fire.
    if (signal?.aborted) {
      reject(new DmError(`wait on '${label}' aborted`, { code: 'ERR_DM_ABORTED', device: label, cause: signal.reason }));
      return;
    }
    const onAbort = () => {
      watcher.stop();
      reject(new DmError(`wait on '${label}' aborted`, { code: 'ERR_DM_ABORTED', device: label, cause: signal?.reason }));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    watcher.start((status) => {
      signal?.removeEventListener('abort', onAbort);
      if (status < 0)
        reject(new DmError(`poll on the device-mapper control fd failed (${status})`, { code: 'EIO', syscall: 'poll', device: label }));
      else resolvePromise();
    });
  });
}
