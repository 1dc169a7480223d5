// A set's `docker info` storage fields, as data (bytes for sizes).
import * as dm from '../dm';
import { udevRunning } from '../nodes';
import { devicePath, type ThinPool } from '../pool/index';
import { LIBRARY_VERSION } from '../version';
import type { Settings } from './options';
import type { DeviceSetInfo } from './types';

/** The fields from the pool's usage and table, the kernel's version, and the set's own counts. */
export async function setInfo(
  pool: ThinPool,
  settings: Settings,
  counts: { baseSize: number; devices: number; deferredDeleted: number },
): Promise<DeviceSetInfo> {
  const [u, version, udev, table] = await Promise.all([pool.usage(), dm.version(), udevRunning(), dm.table(pool.name)]);
  const [metaDev, dataDev] = (table[0]?.params ?? '').split(' ');
  const info: DeviceSetInfo = {
    poolName: pool.name,
    poolBlockSize: pool.blockSize,
    baseDeviceSize: counts.baseSize,
    backingFilesystem: settings.fs,
    dataFile: await devicePath(dataDev ?? '', { missing: 'keep' }),
    metadataFile: await devicePath(metaDev ?? '', { missing: 'keep' }),
    dataSpaceUsed: u.data.used,
    dataSpaceTotal: u.data.total,
    dataSpaceAvailable: u.data.available,
    metadataSpaceUsed: u.metadata.used,
    metadataSpaceTotal: u.metadata.total,
    metadataSpaceAvailable: u.metadata.available,
    thinPoolMinimumFreeSpace: Math.floor((u.data.total * settings.minFreeSpace) / 100),
    udevSyncSupported: udev,
    deferredRemovalEnabled: settings.deferredRemoval,
    deferredDeletionEnabled: settings.deferredDeletion,
    deferredDeletedDeviceCount: counts.deferredDeleted,
    libraryVersion: LIBRARY_VERSION,
    driverVersion: `${version.major}.${version.minor}.${version.patch}`,
    devices: counts.devices,
  };
  if (pool.loopBacking) {
    info.dataLoopFile = pool.loopBacking.dataFile;
    info.metadataLoopFile = pool.loopBacking.metadataFile;
  }
  return info;
}
