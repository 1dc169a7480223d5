// Loop devices through their ioctls (no losetup). The sequence follows
// util-linux's loopdev.c: LOOP_CTL_GET_FREE, then LOOP_CONFIGURE; on kernels
// without it (before 5.8: EINVAL/ENOTTY) LOOP_SET_FD + LOOP_SET_STATUS64
// (+ block size, direct I/O). Another process can take the free device
// between GET_FREE and configure (EBUSY): ask for a fresh one, bounded.
// The common path (LOOP_CONFIGURE, a node that exists) is one native call,
// one threadpool trip; what to do when a step of it fails is decided here.
import { close as closeFd, constants, open as openFd } from 'node:fs';
import { open, readdir, type FileHandle } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { native, type DevNumber, type LoopSimpleIoctl } from './binding';
import { traced, tracedOutcome, type Hints } from './control';
import { DmError, errnoOf, invalidArg } from './errors';
import { ensureBlockNode } from './nodes';
import { sysfsDev, sysfsText } from './sysfs';
import { checkBoolean, checkOptions, checkPath, checkUint } from './validate';

const LOOP_CONTROL = '/dev/loop-control';
const LF = native.loopFlags;
const GET_FREE_ATTEMPTS = 16;
const SET_STATUS_ATTEMPTS = 64; // EAGAIN while the old page cache drains
const SET_STATUS_DELAY_MS = 25;

/** Options of loop.attach (LOOP_CONFIGURE's fields). */
export interface AttachOptions {
  readOnly?: boolean;
  /** Bypass the page cache (O_DIRECT on the backing file) when the file system supports it. */
  directIo?: boolean;
  /** Detach by itself when the last user closes it; the returned device holds it open until release(). */
  autoclear?: boolean;
  /** Scan the device for partitions. */
  partscan?: boolean;
  /** Bytes to skip at the start of the file. */
  offset?: number;
  /** Bytes of the file to expose (0: up to its end). */
  sizeLimit?: number;
  /** Logical block size: 512, 1024, 2048 or 4096. */
  blockSize?: number;
  /** Use LOOP_SET_FD + LOOP_SET_STATUS64 even when LOOP_CONFIGURE exists (also: DEVMAPPER_LOOP_LEGACY=1). */
  legacy?: boolean;
}

/** A loop device's state (LOOP_GET_STATUS64). */
export interface LoopInfo {
  path: string;
  number: number;
  major: number;
  minor: number;
  backingFile: string;
  offset: number;
  sizeLimit: number;
  readOnly: boolean;
  autoclear: boolean;
  partscan: boolean;
  directIo: boolean;
  /** Logical block size in bytes. */
  blockSize: number;
  /** Size of the device in bytes. */
  size: number;
}

/** An attached loop device, as loop.attach resolves. */
export interface LoopDevice {
  path: string;
  number: number;
  major: number;
  minor: number;
  /** Whether direct I/O is in effect (the kernel falls back to buffered I/O where the backing file system cannot do it). */
  directIo: boolean;
  /** Close the descriptor an autoclear device is held open by (no-op otherwise); the device detaches once unused. */
  release(): Promise<void>;
}

/** A loop device: its path ('/dev/loop3') or number (3). */
export type LoopRef = string | number;

const ATTACH_KEYS = ['readOnly', 'directIo', 'autoclear', 'partscan', 'offset', 'sizeLimit', 'blockSize', 'legacy'] as const;

function loopNumber(ref: LoopRef): number {
  if (typeof ref === 'number') return checkUint(ref, 'loop device', { max: 0xfffff });
  if (typeof ref === 'string') {
    const m = /^\/dev\/loop(\d+)$/.exec(ref);
    if (m) return Number(m[1]);
  }
  throw invalidArg('loop device', `expected '/dev/loopN' or a number, got ${JSON.stringify(ref)}`);
}

const loopPath = (n: number) => `/dev/loop${n}`;

/** Make /dev/loopN if nothing (devtmpfs, udev) did, or replace a node that is not the device's. */
async function ensureLoopNode(n: number): Promise<void> {
  const path = loopPath(n);
  const dev = await sysfsDev(`loop${n}`);
  if (!dev) throw new DmError(`${path} does not exist`, { code: 'ENXIO', device: path });
  await ensureBlockNode(path, dev);
}

function loopOpenError(path: string, e: unknown, detail?: string): DmError {
  const code = e instanceof DmError ? e.code : errnoOf(e as NodeJS.ErrnoException);
  return new DmError(
    `cannot open ${path}: ${detail ?? code}${code === 'EACCES' || code === 'EPERM' ? ' — loop devices need CAP_SYS_ADMIN; run as root' : ''}`,
    {
      code,
      syscall: 'open',
      device: path,
      cause: e,
    },
  );
}

/** Open /dev/loopN, making the node first if nothing (devtmpfs, udev) did. */
async function openLoop(n: number, flags: number): Promise<FileHandle> {
  const path = loopPath(n);
  await ensureLoopNode(n);
  try {
    return await open(path, flags);
  } catch (e) {
    throw loopOpenError(path, e);
  }
}

/** What open() of /dev/loopN gives when the node is missing (ENOENT), of another device (ENXIO: none behind it; ENODEV: not a loop). */
const WRONG_NODE = new Set(['ENOENT', 'ENXIO', 'ENODEV']);

/**
 * Open /dev/loopN, issue `op`, close: one trip. The node is trusted, as
 * losetup does; when it is missing or not the device's, it is made and the
 * call tried once more.
 */
async function loopCall(n: number, op: LoopSimpleIoctl, arg: number | undefined, hints: Hints): Promise<number> {
  return onLoopNode(n, op, (path) => native.loopPathIoctl(path, constants.O_RDONLY, op, arg), hints);
}

/** loopCall's retry around any one-trip call on /dev/loopN. */
async function onLoopNode<T>(n: number, what: string, call: (path: string) => Promise<T>, hints: Hints): Promise<T> {
  const path = loopPath(n);
  for (let attempt = 1; ; attempt++) {
    const r = await tracedOutcome(what, path, () => call(path), hints);
    if (!r.error) return r.value;
    if (r.native.syscall !== 'open') throw r.error;
    if (attempt > 1 || !WRONG_NODE.has(r.error.code)) throw loopOpenError(path, r.error, r.native.detail);
    await ensureLoopNode(n);
  }
}

async function openFile(path: string, flags: number, what: string): Promise<FileHandle> {
  try {
    return await open(path, flags);
  } catch (e) {
    const code = errnoOf(e as NodeJS.ErrnoException);
    throw new DmError(`cannot open ${what} ${path}: ${code}`, { code, syscall: 'open', device: path, cause: e });
  }
}

let configureMissing = false; // this kernel predates LOOP_CONFIGURE

// /dev/loop-control, opened once and kept for the life of the process (as the
// device-mapper control fd is): two threadpool trips fewer per attach. A plain
// fd, which nothing closes behind our back (a FileHandle is, once garbage).
let controlFd: Promise<number> | undefined;
function loopControl(): Promise<number> {
  controlFd ??= promisify(openFd)(LOOP_CONTROL, 'r+').catch((e: unknown) => {
    controlFd = undefined; // let a later call try again (e.g. after modprobe loop)
    const code = errnoOf(e as NodeJS.ErrnoException);
    throw new DmError(`cannot open loop control ${LOOP_CONTROL}: ${code}`, { code, syscall: 'open', device: LOOP_CONTROL, cause: e });
  });
  return controlFd;
}

/** Steps of native.loopAttach, as its failures name them. */
const enum AttachStep {
  OpenFile,
  GetFree,
  OpenLoop,
  Configure,
}

/** Attach `file` to a free loop device. */
export async function attach(file: string, options?: AttachOptions): Promise<LoopDevice> {
  checkPath(file, 'file');
  const o = checkOptions<AttachOptions>(options, 'options', ATTACH_KEYS);
  for (const k of ['readOnly', 'directIo', 'autoclear', 'partscan', 'legacy'] as const) checkBoolean(o[k], `options.${k}`);
  const offset = o.offset === undefined ? 0 : checkUint(o.offset, 'options.offset');
  const sizeLimit = o.sizeLimit === undefined ? 0 : checkUint(o.sizeLimit, 'options.sizeLimit');
  const blockSize = o.blockSize === undefined ? 0 : checkUint(o.blockSize, 'options.blockSize');
  if (blockSize !== 0 && ![512, 1024, 2048, 4096].includes(blockSize))
    throw invalidArg('options.blockSize', `${blockSize} is not 512, 1024, 2048 or 4096`);
  const legacy = o.legacy ?? process.env.DEVMAPPER_LOOP_LEGACY === '1';
  const c: Config = { ...o, offset, sizeLimit, blockSize, legacy };
  const mode = o.readOnly ? constants.O_RDONLY : constants.O_RDWR;
  const control = await loopControl();
  if (!legacy && !configureMissing) {
    const cfg = {
      offset,
      sizeLimit,
      blockSize,
      fileName: file.slice(-63),
      flags: statusFlags(c) | (o.directIo ? LF.LO_FLAGS_DIRECT_IO : 0),
    };
    for (let attempt = 1; ; attempt++) {
      const r = await tracedOutcome('LOOP_CTL_GET_FREE+LOOP_CONFIGURE', file, () =>
        native.loopAttach(control, file, mode, cfg, { hold: o.autoclear === true, status: o.directIo === true }),
      );
      if (!r.error) {
        const held = r.value.fd >= 0 ? { close: () => promisify(closeFd)(r.value.fd) } : undefined;
        return loopDevice(r.value.number, r.value, held, (r.value.flags & LF.LO_FLAGS_DIRECT_IO) !== 0);
      }
      const { error: e, native: failure } = r;
      if (failure.step === undefined) throw e;
      const n = failure.number ?? -1;
      if (failure.step === AttachStep.OpenFile)
        throw new DmError(`cannot open backing file ${file}: ${e.code}`, { code: e.code, syscall: 'open', device: file, cause: e });
      if (failure.step === AttachStep.OpenLoop) {
        // No node yet (no devtmpfs or udev), or one that is not the device's: make it and go again.
        if (attempt >= GET_FREE_ATTEMPTS || !WRONG_NODE.has(e.code)) throw loopOpenError(loopPath(n), e, failure.detail);
        await ensureLoopNode(n).catch((x: unknown) => {
          if (!(x instanceof DmError) || x.code !== 'ENXIO') throw x; // removed meanwhile: ask for another
        });
        continue;
      }
      if (failure.step === AttachStep.Configure) {
        if (e.code === 'EBUSY' && attempt < GET_FREE_ATTEMPTS) continue; // raced: take another
        // ENOTTY: a kernel before LOOP_CONFIGURE. EINVAL: that, or a value
        // the kernel refuses; the legacy path tells which by failing on the same value.
        if (e.code === 'ENOTTY') configureMissing = true;
        if (e.code === 'EINVAL' || e.code === 'ENOTTY') break;
      }
      throw e;
    }
  }
  return attachLegacy(file, mode, control, c);
}

/** LOOP_SET_FD + LOOP_SET_STATUS64 (+ block size, direct I/O), a call at a time. */
async function attachLegacy(file: string, mode: number, control: number, c: Config): Promise<LoopDevice> {
  const backing = await openFile(file, mode, 'backing file');
  try {
    for (let attempt = 1; ; attempt++) {
      const n = await traced('LOOP_CTL_GET_FREE', LOOP_CONTROL, () => native.loopIoctl(control, 'LOOP_CTL_GET_FREE'));
      const dev = await openLoop(n, mode);
      try {
        await configureLegacy(dev, backing, file, c);
      } catch (e) {
        await dev.close();
        if (e instanceof DmError && e.code === 'EBUSY' && attempt < GET_FREE_ATTEMPTS) continue; // raced: take another
        throw e;
      }
      const devNumber = (await sysfsDev(`loop${n}`)) ?? { major: 7, minor: n };
      const directIo = (await sysfsText(`loop${n}`, 'loop/dio')) === '1';
      if (c.autoclear) return loopDevice(n, devNumber, dev, directIo);
      await dev.close();
      return loopDevice(n, devNumber, undefined, directIo);
    }
  } finally {
    await backing.close(); // the kernel holds its own reference now
  }
}

type Config = AttachOptions & { offset: number; sizeLimit: number; blockSize: number; legacy: boolean };

function statusFlags(c: Config): number {
  let flags = 0;
  if (c.readOnly) flags |= LF.LO_FLAGS_READ_ONLY;
  if (c.autoclear) flags |= LF.LO_FLAGS_AUTOCLEAR;
  if (c.partscan) flags |= LF.LO_FLAGS_PARTSCAN;
  return flags;
}

async function configureLegacy(dev: FileHandle, backing: FileHandle, file: string, c: Config): Promise<void> {
  const path = `fd ${dev.fd}`;
  const flags = statusFlags(c);
  const info = { offset: c.offset, sizeLimit: c.sizeLimit, fileName: file.slice(-63) };
  await traced('LOOP_SET_FD', path, () => native.loopIoctl(dev.fd, 'LOOP_SET_FD', backing.fd));
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        // READ_ONLY and DIRECT_IO are not settable here: read-only follows the fd mode.
        await traced('LOOP_SET_STATUS64', path, () => native.loopSetStatus(dev.fd, { ...info, flags: flags & ~LF.LO_FLAGS_READ_ONLY }));
        break;
      } catch (e) {
        if (!(e instanceof DmError) || e.code !== 'EAGAIN' || attempt >= SET_STATUS_ATTEMPTS) throw e;
        await sleep(SET_STATUS_DELAY_MS);
      }
    }
    if (c.blockSize) await traced('LOOP_SET_BLOCK_SIZE', path, () => native.loopIoctl(dev.fd, 'LOOP_SET_BLOCK_SIZE', c.blockSize));
    if (c.directIo) {
      // Like LOOP_CONFIGURE, fall back to buffered I/O where O_DIRECT is not possible.
      await traced('LOOP_SET_DIRECT_IO', path, () => native.loopIoctl(dev.fd, 'LOOP_SET_DIRECT_IO', 1)).catch((e: unknown) => {
        if (!(e instanceof DmError) || e.code !== 'EINVAL') throw e;
      });
    }
  } catch (e) {
    await native.loopIoctl(dev.fd, 'LOOP_CLR_FD').catch(() => undefined); // undo SET_FD
    throw e;
  }
}

/** What attach() resolves with; `held` is the descriptor an autoclear device is held open by. */
function loopDevice(n: number, dev: DevNumber, held: { close(): Promise<void> } | undefined, directIo: boolean): LoopDevice {
  let released = false;
  return {
    path: loopPath(n),
    number: n,
    major: dev.major,
    minor: dev.minor,
    directIo,
    async release() {
      if (released || held === undefined) return;
      released = true;
      await held.close();
    },
  };
}

/** The first free loop device (LOOP_CTL_GET_FREE, which adds one if none is free), as `losetup -f` prints it. */
export async function findFree(): Promise<{ path: string; number: number; major: number; minor: number }> {
  const control = await loopControl();
  const n = await traced('LOOP_CTL_GET_FREE', LOOP_CONTROL, () => native.loopIoctl(control, 'LOOP_CTL_GET_FREE'));
  await ensureLoopNode(n);
  const dev = (await sysfsDev(`loop${n}`)) ?? { major: 7, minor: n };
  return { path: loopPath(n), number: n, major: dev.major, minor: dev.minor };
}

/** Detach the backing file. A device still in use detaches when its last user closes it. */
export async function detach(ref: LoopRef): Promise<void> {
  const n = loopNumber(ref);
  await loopCall(n, 'LOOP_CLR_FD', undefined, { ENXIO: `${loopPath(n)} is not attached` });
}

/** The loop device's backing file, offset, size limit and flags (LOOP_GET_STATUS64). */
export async function info(ref: LoopRef): Promise<LoopInfo> {
  const n = loopNumber(ref);
  // The sysfs attributes are read in the same trip, from C: five reads through Node's fs cost more than the trip.
  const s = await onLoopNode(n, 'LOOP_GET_STATUS64', (path) => native.loopPathStatus(path, `/sys/block/loop${n}`, INFO_ATTRIBUTES), {
    ENXIO: `${loopPath(n)} is not attached`,
  });
  const [dev, backing, blockSize, sectors, dio] = s.files.map((text) => text?.trim());
  const [major, minor] = dev ? dev.split(':').map(Number) : [7, n];
  return toLoopInfo(n, { major: major!, minor: minor! }, backing ?? s.fileName, s, { blockSize, sectors, dio });
}

const INFO_ATTRIBUTES = ['dev', 'loop/backing_file', 'queue/logical_block_size', 'size', 'loop/dio'] as const;

/** LoopInfo from LOOP_GET_STATUS64's reply and the device's sysfs attributes (undefined: unreadable). */
function toLoopInfo(
  n: number,
  dev: DevNumber,
  backingFile: string,
  s: { offset: number; sizeLimit: number; flags: number },
  attrs: { blockSize?: string; sectors?: string; dio?: string },
): LoopInfo {
  const { flags } = s;
  return {
    path: loopPath(n),
    number: n,
    major: dev.major,
    minor: dev.minor,
    backingFile, // sysfs has the whole path; the ioctl only 64 bytes
    offset: s.offset,
    sizeLimit: s.sizeLimit,
    readOnly: (flags & LF.LO_FLAGS_READ_ONLY) !== 0,
    autoclear: (flags & LF.LO_FLAGS_AUTOCLEAR) !== 0,
    partscan: (flags & LF.LO_FLAGS_PARTSCAN) !== 0,
    directIo: attrs.dio === undefined ? (flags & LF.LO_FLAGS_DIRECT_IO) !== 0 : attrs.dio === '1',
    blockSize: Number(attrs.blockSize ?? 512),
    size: Number(attrs.sectors ?? 0) * 512,
  };
}

/** Every attached loop device. */
export async function list(): Promise<LoopInfo[]> {
  const blocks = (await readdir('/sys/block').catch(() => [] as string[])).filter((b) => /^loop\d+$/.test(b));
  const attached: LoopInfo[] = [];
  for (const block of blocks.sort((a, b) => Number(a.slice(4)) - Number(b.slice(4)))) {
    if ((await sysfsText(block, 'loop/backing_file')) === undefined) continue;
    try {
      attached.push(await info(Number(block.slice(4))));
    } catch (e) {
      if (!(e instanceof DmError) || e.code !== 'ENXIO') throw e; // detached meanwhile
    }
  }
  return attached;
}

/** Re-read the backing file's size (after it grew). */
export async function refreshCapacity(ref: LoopRef): Promise<void> {
  await simple(ref, 'LOOP_SET_CAPACITY');
}

/** Switch direct I/O on or off (EINVAL where the backing file system cannot). */
export async function setDirectIo(ref: LoopRef, on: boolean): Promise<void> {
  if (typeof on !== 'boolean') throw invalidArg('on', 'expected a boolean');
  await simple(ref, 'LOOP_SET_DIRECT_IO', on ? 1 : 0);
}

async function simple(ref: LoopRef, op: 'LOOP_SET_CAPACITY' | 'LOOP_SET_DIRECT_IO', arg?: number): Promise<void> {
  const n = loopNumber(ref);
  await loopCall(n, op, arg, { ENXIO: `${loopPath(n)} is not attached` });
}
