// The thin-pool layer's public face: ThinPool, its watcher, and their types.
export { ThinPool } from './pool';
export {
  PoolWatcher,
  type WatchOptions,
  type AutoExtendOptions,
  type Extension,
  type PoolEvent,
  type PoolWatcherEvents,
  type WatchedPool,
} from './watch';
export { defaultPoolName, devicePath, type LoopBacking } from './backing';
export type { ThinDevice } from './devices';
export {
  MAX_METADATA_SIZE,
  MAX_THIN_ID,
  METADATA_BLOCK_SIZE,
  MIN_METADATA_SIZE,
  THIN_POOL_DEFAULTS,
  checkThinId,
  type ActivateOptions,
  type DirectOptions,
  type LoopBackedOptions,
  type PoolTableOptions,
  type ResizeOptions,
  type ThinChangeOptions,
  type ThinDeviceOptions,
} from './limits';
export {
  poolAlerts,
  toPoolStatus,
  toPoolUsage,
  type PoolAlert,
  type PoolStatus,
  type PoolUsage,
  type SpaceUsage,
  type ThinUsage,
} from './status';
