// The shapes device-mapper calls take and give: device references, tables
// and device info, with their validation and decoding. Shared by dm.ts (one
// call per ioctl) and batch.ts (several in one trip).
import { native, type DevNumber, type DmIoctlReply, type DmIoctlRequest } from './binding';
import { invalidArg } from './errors';
import { mapperPath } from './nodes';
import { checkLine, checkName, checkTargetType, checkUint, checkUuid } from './validate';

const F = native.dmFlags;

/** One line of a device-mapper table: `length` sectors from `start`, mapped by target `type`. */
export interface Target {
  /** First sector (512 bytes) this target covers. */
  start: number;
  /** Number of sectors. */
  length: number;
  /** Target type, e.g. 'linear', 'thin-pool', 'thin'. */
  type: string;
  /** The target's parameter string (table) or status string (status). */
  params: string;
}

/** A device: by name, by uuid, or by device number. */
export type DeviceRef = string | { uuid: string } | DevNumber;

/** A device's state as DM_DEV_STATUS reports it. */
export interface DeviceInfo {
  name: string;
  /** '' when the device has no uuid. */
  uuid: string;
  major: number;
  minor: number;
  /** Its node: /dev/mapper/NAME. */
  path: string;
  openCount: number;
  targetCount: number;
  eventNr: number;
  suspended: boolean;
  readOnly: boolean;
  activeTable: boolean;
  inactiveTable: boolean;
  deferredRemove: boolean;
  /** Suspended by the kernel itself (e.g. a thin device while its pool is). */
  internalSuspend: boolean;
}

/** A device reference, validated: the request fields that name it, and words for messages. */
export function resolveRef(ref: DeviceRef, field = 'device'): { request: DmIoctlRequest; label: string } {
  if (typeof ref === 'string') return { request: { name: checkName(ref, field) }, label: ref };
  if (typeof ref === 'object' && ref !== null) {
    if ('uuid' in ref) {
      const uuid = checkUuid(ref.uuid, `${field}.uuid`);
      return { request: { uuid }, label: `uuid ${uuid}` };
    }
    if ('major' in ref && 'minor' in ref) {
      const major = checkUint(ref.major, `${field}.major`, { max: 0xfff });
      const minor = checkUint(ref.minor, `${field}.minor`, { max: 0xfffff });
      return { request: { dev: { major, minor } }, label: `${major}:${minor}` };
    }
  }
  throw invalidArg(field, 'expected a device name, { uuid } or { major, minor }');
}

/** A table, validated: contiguous targets from sector 0, each with a type and one line of params. */
export function checkTable(table: unknown, field = 'table'): Target[] {
  if (!Array.isArray(table) || table.length === 0) throw invalidArg(field, 'expected a non-empty array of targets');
  let next = 0;
  return table.map((t: unknown, i) => {
    const f = `${field}[${i}]`;
    if (typeof t !== 'object' || t === null) throw invalidArg(f, 'expected { start, length, type, params }');
    const { start, length, type, params } = t as Partial<Target>;
    checkUint(start, `${f}.start`);
    checkUint(length, `${f}.length`, { min: 1 });
    // The kernel refuses gaps and overlaps; say which target before it does.
    if (start !== next) throw invalidArg(`${f}.start`, `${start} leaves a gap or overlap: the previous target ends at sector ${next}`);
    next = start + length!;
    return { start: start!, length: length!, type: checkTargetType(type, `${f}.type`), params: checkLine(params ?? '', `${f}.params`) };
  });
}

/** A DM_DEV_STATUS-style reply as DeviceInfo. */
export function toInfo(r: DmIoctlReply): DeviceInfo {
  return {
    name: r.name,
    uuid: r.uuid,
    major: r.dev.major,
    minor: r.dev.minor,
    path: mapperPath(r.name),
    openCount: r.openCount,
    targetCount: r.targetCount,
    eventNr: r.eventNr,
    suspended: (r.flags & F.DM_SUSPEND_FLAG) !== 0,
    readOnly: (r.flags & F.DM_READONLY_FLAG) !== 0,
    activeTable: (r.flags & F.DM_ACTIVE_PRESENT_FLAG) !== 0,
    inactiveTable: (r.flags & F.DM_INACTIVE_PRESENT_FLAG) !== 0,
    deferredRemove: (r.flags & F.DM_DEFERRED_REMOVE) !== 0,
    internalSuspend: (r.flags & F.DM_INTERNAL_SUSPEND_FLAG) !== 0,
  };
}
