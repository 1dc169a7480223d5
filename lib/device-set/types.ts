// What a DeviceSet's calls give back: a device's details and usage, and the
// set's `docker info` fields.
import type { FsType } from '../filesystem';

/** A device set's device: its record, and whether it is active and mounted. */
export interface DeviceDetails {
  id: string;
  parent: string | null;
  /** Its thin device's id in the pool. */
  thinId: number;
  size: number;
  /** /dev/mapper/NAME (present while active). */
  path: string;
  active: boolean;
  /** Where this set mounted it, if it did. */
  mountPoint?: string;
  /** Waiting for deferred deletion. */
  deleted: boolean;
}

/** What the pool has mapped of one device (moby's GetDeviceStatus; containerd's Usage size). */
export interface DeviceUsage {
  id: string;
  /** Its thin device's id in the pool. */
  thinId: number;
  /** The device's size in bytes. */
  size: number;
  /** Bytes the pool has mapped for it (its own and those shared with its parent). */
  mappedBytes: number;
  mappedSectors: number;
  /** null when nothing is mapped. */
  highestMappedSector: number | null;
  /** The pool transaction that created the device. */
  transactionId: number;
}

/** The storage fields of `docker info`, as data (bytes for sizes). */
export interface DeviceSetInfo {
  poolName: string;
  poolBlockSize: number;
  baseDeviceSize: number;
  backingFilesystem: FsType;
  /** The pool's data and metadata devices. */
  dataFile: string;
  metadataFile: string;
  /** Loop-backed pools: the sparse files. */
  dataLoopFile?: string;
  metadataLoopFile?: string;
  dataSpaceUsed: number;
  dataSpaceTotal: number;
  dataSpaceAvailable: number;
  metadataSpaceUsed: number;
  metadataSpaceTotal: number;
  metadataSpaceAvailable: number;
  /** Bytes of data space kept free (minFreeSpace of the total). */
  thinPoolMinimumFreeSpace: number;
  udevSyncSupported: boolean;
  deferredRemovalEnabled: boolean;
  deferredDeletionEnabled: boolean;
  deferredDeletedDeviceCount: number;
  libraryVersion: string;
  driverVersion: string;
  devices: number;
}
