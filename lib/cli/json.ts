// What `--json` prints, one shape per verb (docs/cli-json.md): every key is
// there whatever the device (null or [] when there is nothing), sizes are
// bytes, versions are "X.Y.Z" strings. The library's objects leave optional
// keys out; these builders put them back as null.
import type { DevNumber } from '../binding';
import type { DeviceInfo, ListedDevice, Target, TargetVersion, Version } from '../dm';
import type { DeviceDetails, DeviceSetInfo } from '../device-set/index';
import type { PoolStatus, PoolUsage, SpaceUsage } from '../pool/index';
import type { LoopBacking } from '../pool/backing';
import type { LoopInfo } from '../loop';

/** `version`: the library's, the driver's and each target's version, each "X.Y.Z". */
export function versionJson(library: string, driver: Version, targets: TargetVersion[]) {
  return {
    library,
    driver: `${driver.major}.${driver.minor}.${driver.patch}`,
    targets: targets.map((t) => ({ name: t.name, version: t.version.join('.') })),
  };
}

/** `ls`: one entry per device. */
export function listJson(devices: ListedDevice[]) {
  return devices.map((d) => ({ name: d.name, uuid: d.uuid || null, major: d.major, minor: d.minor, eventNr: d.eventNr }));
}

/** `info` (and `create`): the device's state, uuid null when it has none. */
export function infoJson(i: DeviceInfo) {
  return {
    name: i.name,
    uuid: i.uuid || null,
    major: i.major,
    minor: i.minor,
    path: i.path,
    suspended: i.suspended,
    readOnly: i.readOnly,
    openCount: i.openCount,
    targetCount: i.targetCount,
    eventNr: i.eventNr,
    activeTable: i.activeTable,
    inactiveTable: i.inactiveTable,
    deferredRemove: i.deferredRemove,
    internalSuspend: i.internalSuspend,
  };
}

/** `table`: one entry per target; start and length in sectors, as table lines. */
export function tableJson(table: Target[]) {
  return table.map((t) => ({ start: t.start, length: t.length, type: t.type, params: t.params }));
}

/** `status`: as `table`, `params` the status text, `parsed` its fields where the target type is known (else null). */
export function statusJson(lines: Array<Target & { parsed: unknown }>) {
  return lines.map((t) => ({ ...tableJson([t])[0]!, parsed: (t.parsed as object | undefined) ?? null }));
}

/** `deps`: each device the table uses, with its kernel name and, for a device-mapper device, its name (else the kernel name). */
export function depsJson(deps: Array<DevNumber & { blockDevice: string | undefined; name: string | undefined }>) {
  return deps.map((d) => ({ major: d.major, minor: d.minor, blockDevice: d.blockDevice ?? null, name: d.name ?? d.blockDevice ?? null }));
}

/** `loop ls` entries and `loop info`. */
export function loopJson(i: LoopInfo) {
  return {
    path: i.path,
    number: i.number,
    major: i.major,
    minor: i.minor,
    backingFile: i.backingFile,
    size: i.size,
    offset: i.offset,
    sizeLimit: i.sizeLimit,
    readOnly: i.readOnly,
    autoclear: i.autoclear,
    partscan: i.partscan,
    directIo: i.directIo,
    blockSize: i.blockSize,
  };
}

/** `loop attach`: the device; directIo null for `-f` alone (nothing attached). */
export function loopAttachJson(d: { path: string; number: number; major: number; minor: number; directIo: boolean | null }) {
  return { path: d.path, number: d.number, major: d.major, minor: d.minor, directIo: d.directIo };
}

const space = (s: SpaceUsage) => ({ used: s.used, total: s.total, available: s.available, hostFree: s.hostFree ?? null });

/** `pool status`: the thin-pool status fields, the space in bytes, the backing files of a loop-backed pool (else null). */
export function poolStatusJson(
  pool: { name: string; path: string; blockSize: number; loopBacking?: LoopBacking | undefined },
  s: PoolStatus,
  usage: PoolUsage,
) {
  return {
    name: pool.name,
    path: pool.path,
    blockSize: pool.blockSize,
    mode: s.mode,
    transactionId: s.transactionId,
    usedDataBlocks: s.usedDataBlocks,
    totalDataBlocks: s.totalDataBlocks,
    usedMetadataBlocks: s.usedMetadataBlocks,
    totalMetadataBlocks: s.totalMetadataBlocks,
    heldMetadataRoot: s.heldMetadataRoot,
    needsCheck: s.needsCheck,
    discardPassdown: s.discardPassdown,
    ignoreDiscard: s.ignoreDiscard === true,
    errorIfNoSpace: s.errorIfNoSpace,
    metadataLowWatermark: s.metadataLowWatermark ?? null,
    alerts: s.alerts,
    raw: s.raw,
    usage: { data: space(usage.data), metadata: space(usage.metadata) },
    dataFile: pool.loopBacking?.dataFile ?? null,
    metadataFile: pool.loopBacking?.metadataFile ?? null,
  };
}

/** `set info` (and `set init`): the docker info fields, the loop files null on a direct-lvm set. */
export function setInfoJson(i: DeviceSetInfo) {
  return {
    poolName: i.poolName,
    poolBlockSize: i.poolBlockSize,
    baseDeviceSize: i.baseDeviceSize,
    backingFilesystem: i.backingFilesystem,
    dataFile: i.dataFile,
    metadataFile: i.metadataFile,
    dataLoopFile: i.dataLoopFile ?? null,
    metadataLoopFile: i.metadataLoopFile ?? null,
    dataSpaceUsed: i.dataSpaceUsed,
    dataSpaceTotal: i.dataSpaceTotal,
    dataSpaceAvailable: i.dataSpaceAvailable,
    metadataSpaceUsed: i.metadataSpaceUsed,
    metadataSpaceTotal: i.metadataSpaceTotal,
    metadataSpaceAvailable: i.metadataSpaceAvailable,
    thinPoolMinimumFreeSpace: i.thinPoolMinimumFreeSpace,
    udevSyncSupported: i.udevSyncSupported,
    deferredRemovalEnabled: i.deferredRemovalEnabled,
    deferredDeletionEnabled: i.deferredDeletionEnabled,
    deferredDeletedDeviceCount: i.deferredDeletedDeviceCount,
    libraryVersion: i.libraryVersion,
    driverVersion: i.driverVersion,
    devices: i.devices,
  };
}

/** `set ls` entries (and `set create`): mountPoint null when this set has not mounted it. */
export function setDeviceJson(d: DeviceDetails) {
  return {
    id: d.id,
    parent: d.parent,
    thinId: d.thinId,
    size: d.size,
    path: d.path,
    active: d.active,
    mountPoint: d.mountPoint ?? null,
    deleted: d.deleted,
  };
}
