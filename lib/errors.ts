import { constants } from 'node:os';

/**
 * Codes the library itself assigns (errno names such as 'EBUSY' are used as
 * they are). The one list of them: a new code goes here.
 */
export type DmLibraryCode =
  | 'ERR_DM_INVALID_ARG' // bad input, rejected before any ioctl
  | 'ERR_DM_DECODE' // the kernel's reply could not be decoded
  | 'ERR_DM_PARSE' // a table or status line does not follow its target's grammar
  | 'ERR_DM_UNAVAILABLE' // no device-mapper / loop support on this kernel
  | 'ERR_DM_NO_BINARY' // no addon for this platform: no prebuild matches and none was built
  | 'ERR_DM_ABORTED' // an AbortSignal fired
  | 'ERR_DM_TIMEOUT' // a bounded retry ran out
  | 'ERR_DM_LOCKED' // another process holds the device set open
  | 'ERR_DM_POOL_FULL' // the pool is below its minimum free space
  | 'ERR_DM_CORRUPT' // records and pool disagree in a way recovery cannot mend
  | 'ERR_DM_TOOL' // an external tool (mkfs, resize2fs, xfs_growfs) failed
  | 'ERR_DM_NOT_FOUND' // no such thin id, snapshot or parent
  | 'ERR_DM_ALREADY_EXISTS' // a snapshot key or name is taken
  | 'ERR_DM_FAILED_PRECONDITION'; // a snapshot in the wrong state for the call

/**
 * A kernel errno by the name Linux's headers give it ('EBUSY'; EAGAIN, not
 * its alias EWOULDBLOCK; EOPNOTSUPP, not ENOTSUP): the names Node.js knows on
 * Linux (a test holds this list to `os.constants.errno`), or `E<n>` for the
 * kernel's rarer ones, which Node.js has no name for (ENOTBLK comes as 'E15').
 */
// prettier-ignore
export type ErrnoName =
  | 'E2BIG' | 'EACCES' | 'EADDRINUSE' | 'EADDRNOTAVAIL' | 'EAFNOSUPPORT' | 'EAGAIN' | 'EALREADY' | 'EBADF' | 'EBADMSG' | 'EBUSY'
  | 'ECANCELED' | 'ECHILD' | 'ECONNABORTED' | 'ECONNREFUSED' | 'ECONNRESET' | 'EDEADLK' | 'EDESTADDRREQ' | 'EDOM' | 'EDQUOT' | 'EEXIST'
  | 'EFAULT' | 'EFBIG' | 'EHOSTUNREACH' | 'EIDRM' | 'EILSEQ' | 'EINPROGRESS' | 'EINTR' | 'EINVAL' | 'EIO' | 'EISCONN'
  | 'EISDIR' | 'ELOOP' | 'EMFILE' | 'EMLINK' | 'EMSGSIZE' | 'EMULTIHOP' | 'ENAMETOOLONG' | 'ENETDOWN' | 'ENETRESET' | 'ENETUNREACH'
  | 'ENFILE' | 'ENOBUFS' | 'ENODATA' | 'ENODEV' | 'ENOENT' | 'ENOEXEC' | 'ENOLCK' | 'ENOLINK' | 'ENOMEM' | 'ENOMSG'
  | 'ENOPROTOOPT' | 'ENOSPC' | 'ENOSR' | 'ENOSTR' | 'ENOSYS' | 'ENOTCONN' | 'ENOTDIR' | 'ENOTEMPTY' | 'ENOTSOCK' | 'ENOTTY'
  | 'ENXIO' | 'EOPNOTSUPP' | 'EOVERFLOW' | 'EPERM' | 'EPIPE' | 'EPROTO' | 'EPROTONOSUPPORT' | 'EPROTOTYPE' | 'ERANGE' | 'EROFS'
  | 'ESPIPE' | 'ESRCH' | 'ESTALE' | 'ETIME' | 'ETIMEDOUT' | 'ETXTBSY' | 'EXDEV'
  | `E${number}`;

/**
 * Every `DmError.code`: a kernel errno name or one of the library's codes.
 * A misspelt code in a comparison (`e.code === 'EBUSSY'`) does not compile.
 */
export type DmErrorCode = ErrnoName | DmLibraryCode;

/** The fields a DmError carries besides its message. */
export interface DmErrorFields {
  code: DmErrorCode;
  errno?: number;
  syscall?: string;
  ioctl?: string;
  device?: string;
  cause?: unknown;
}

/** Every failure of the library is a DmError. */
export class DmError extends Error {
  /** An errno name ('EBUSY', 'ENXIO', ...) or one of the library's 'ERR_DM_*' codes. */
  readonly code: DmErrorCode;
  /** The positive errno when the kernel refused; undefined for library codes. */
  readonly errno?: number;
  /** The failing system call: 'ioctl', 'open', 'mknod', 'mount', ... */
  readonly syscall?: string;
  /** The ioctl request name, e.g. 'DM_DEV_REMOVE' or 'LOOP_CONFIGURE'. */
  readonly ioctl?: string;
  /** The device the call was about (a device-mapper name, a loop path, a file). */
  readonly device?: string;

  /** `message` for people; `fields` as the class's properties say. */
  constructor(message: string, fields: DmErrorFields) {
    super(message, fields.cause === undefined ? undefined : { cause: fields.cause });
    this.name = 'DmError';
    this.code = fields.code;
    if (fields.errno !== undefined) this.errno = fields.errno;
    if (fields.syscall !== undefined) this.syscall = fields.syscall;
    if (fields.ioctl !== undefined) this.ioctl = fields.ioctl;
    if (fields.device !== undefined) this.device = fields.device;
  }
}

/** Aliases that share a number with the name Linux's headers define (EAGAIN, EOPNOTSUPP); os.constants lists the alias later, so it would win. */
const ALIASES = new Set(['EWOULDBLOCK', 'ENOTSUP']);
const errnoNames = new Map<number, ErrnoName>(
  Object.entries(constants.errno)
    .filter(([name]) => !ALIASES.has(name))
    .map(([name, n]) => [n, name as ErrnoName] as const),
);

/** 'EBUSY' for 16, or 'E<n>' for an errno this platform has no name for. */
export function errnoName(errno: number): ErrnoName {
  return errnoNames.get(errno) ?? `E${errno}`;
}

/** The errno name of a Node.js system error (fs, child_process), by its number; `fallback` when it has none. */
export function errnoOf(e: NodeJS.ErrnoException, fallback: ErrnoName = 'EIO'): ErrnoName {
  return typeof e.errno === 'number' ? errnoName(Math.abs(e.errno)) : fallback;
}

export function invalidArg(field: string, problem: string): DmError {
  return new DmError(`invalid ${field}: ${problem}`, { code: 'ERR_DM_INVALID_ARG' });
}

/** Shape of the plain Error the addon rejects with (native/async.h). */
interface NativeFailure {
  errno: number;
  syscall: string;
  op: string;
  detail?: string;
}

function isNativeFailure(e: unknown): e is NativeFailure {
  return typeof e === 'object' && e !== null && typeof (e as NativeFailure).errno === 'number' && 'op' in e;
}

const EPROTO = constants.errno.EPROTO;

/**
 * Turn an addon failure into a DmError whose message says what to do.
 * `device` names what the call was about; `hint` adds context-specific advice
 * keyed by errno name (e.g. EBUSY on remove).
 */
export function fromNative(e: unknown, device: string | undefined, hint?: Partial<Record<DmErrorCode, string>>): DmError {
  if (e instanceof DmError) return e;
  if (!isNativeFailure(e)) {
    return new DmError(e instanceof Error ? e.message : String(e), { code: 'ERR_DM_DECODE', device, cause: e });
  }
  const code = e.errno === EPROTO && e.detail ? 'ERR_DM_DECODE' : errnoName(e.errno);
  const ioctl = e.syscall === 'ioctl' ? e.op : undefined;
  const what = ioctl ?? `${e.syscall} ${e.op}`;
  const subject = device ? ` on '${device}'` : '';
  const advice = hint?.[code] ?? defaultAdvice(code, e, device);
  const message = `${what}${subject} failed: ${e.detail ?? code}${advice ? ` — ${advice}` : ''}`;
  return new DmError(message, { code, errno: e.errno, syscall: e.syscall, ioctl, device });
}

function defaultAdvice(code: DmErrorCode, e: NativeFailure, device: string | undefined): string {
  switch (code) {
    case 'EPERM':
    case 'EACCES':
      return e.op.startsWith('LOOP') ? 'loop devices need CAP_SYS_ADMIN; run as root' : 'device-mapper needs CAP_SYS_ADMIN; run as root';
    case 'ENXIO':
      if (e.op.startsWith('DM_')) return device ? `no such device-mapper device '${device}'` : 'no such device-mapper device';
      return 'no such device';
    case 'EBUSY':
      return 'the device is in use (mounted, open, or held by another device)';
    case 'EEXIST':
      return 'it already exists';
    case 'ENOTTY':
      return 'this kernel does not know the request';
    case 'ENODEV':
      return e.op.startsWith('DM_')
        ? 'a device it names does not exist or is not a block device (check the paths and MAJ:MIN numbers)'
        : 'no such device, or not the kind of device expected';
    case 'ENOENT':
      return 'no such file or device node';
    case 'EINVAL':
      return 'the kernel rejected an argument (dmesg may say which)';
    case 'ENOSPC':
      return 'no space left (a full pool, filesystem or metadata device)';
    case 'ENOMEM':
      return 'the kernel could not allocate memory for the request';
    case 'EROFS':
      return 'the device or filesystem is read-only';
    case 'EIO':
      return "I/O error on the device (dmesg has the kernel's report)";
    case 'EAGAIN':
      return 'the device is changing state; try again';
    default:
      return '';
  }
}
