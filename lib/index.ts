/**
 * devmapper: Linux device-mapper and loop devices for Node.js.
 *
 * `dm` and `loop` are the raw kernel interfaces, one async function per ioctl.
 * Every failure is a {@link DmError}.
 */
export * as dm from './dm';
export * as loop from './loop';
export { DmError, type DmErrorCode, type DmErrorFields, type DmLibraryCode, type ErrnoName } from './errors';
export type {
  Target,
  DeviceRef,
  DeviceInfo,
  ListedDevice,
  Version,
  TargetVersion,
  CreateOptions,
  RemoveOptions,
  RemoveResult,
  SuspendOptions,
  WaitOptions,
  Geometry,
  TableOptions,
} from './dm';
export type { AttachOptions, LoopDevice, LoopInfo, LoopRef } from './loop';
export type { DevNumber } from './binding';
export { ThinPool, THIN_POOL_DEFAULTS, MAX_THIN_ID, METADATA_BLOCK_SIZE, defaultPoolName } from './pool/index';
export type {
  LoopBackedOptions,
  DirectOptions,
  PoolTableOptions,
  PoolStatus,
  PoolAlert,
  PoolUsage,
  SpaceUsage,
  LoopBacking,
  ActivateOptions,
  ThinDeviceOptions,
  ThinChangeOptions,
  ThinDevice,
  ResizeOptions,
  ThinUsage,
} from './pool/index';
export { PoolWatcher } from './pool/index';
export type { WatchedPool } from './pool/index';
export type { Checked, DmName, Sectors, ThinId } from './validate';
export type { WatchOptions, AutoExtendOptions, Extension, PoolEvent, PoolWatcherEvents } from './pool/index';
export { parseSize } from './size';
export { humanSize } from './format';
export type { ProgressHandler } from './progress';
export { DeviceSet } from './device-set/index';
export { Snapshotter, serveSnapshotter } from './snapshotter/index';
export type { ServeOptions, SnapshotterServer } from './snapshotter/index';
export type { Mount, SnapshotInfo, SnapshotKind, SnapshotOptions, SnapshotterOptions, SnapshotUsage } from './snapshotter/index';
export type {
  DeviceSetOptions,
  CreateOptions as DeviceSetCreateOptions,
  DeviceDetails,
  DeviceSetInfo,
  DeviceUsage,
} from './device-set/index';
export type { FsType } from './filesystem';
export { setUpDirectLvm, DIRECT_LVM_DEFAULTS } from './direct-lvm';
export type { DirectLvmOptions, DirectLvm, DirectLvmSetOptions } from './direct-lvm';
export type { DeviceRecord } from './metadata-store';
export * as targets from './targets/index';
