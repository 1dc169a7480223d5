// A pool's status and usage as data: pure functions from the kernel's
// status line (and the free space under a loop-backed pool's files) to
// PoolStatus / PoolUsage / ThinUsage. No kernel here.
import { thinPool as poolGrammar, type ThinPoolHealthyStatus, type ThinPoolMode } from '../targets/thin-pool';
import { METADATA_BLOCK_SIZE, SECTOR } from './limits';

/**
 * Conditions a pool can be in that its user must act on, each the name of
 * the event `watch()` emits when it appears:
 * - lowWater: free data blocks at or below the table's low water mark (the
 *   kernel raises its event there);
 * - metadataLowWater: free metadata blocks below the kernel's metadata low
 *   watermark (min(4 MiB, a quarter of the metadata device));
 * - outOfDataSpace, readOnly, fail: the pool's mode;
 * - needsCheck: the metadata must be checked (thin_check) before the pool can
 *   be written again.
 */
export type PoolAlert = 'lowWater' | 'metadataLowWater' | 'outOfDataSpace' | 'readOnly' | 'fail' | 'needsCheck';

/** The pool's status: the thin-pool status fields, with a failed pool as mode 'fail'. */
export type PoolStatus = Omit<ThinPoolHealthyStatus, 'state' | 'mode'> & {
  /** 'fail' when the kernel reports the pool failed (the counters are then 0). */
  mode: ThinPoolMode | 'fail';
  /** The conditions that hold now, in the order of {@link PoolAlert}. */
  alerts: PoolAlert[];
  /** The kernel's status text, as read. */
  raw: string;
};

/** Which alerts a status shows, given the table's low water mark (in data blocks). */
export function poolAlerts(s: Omit<PoolStatus, 'alerts' | 'raw'>, lowWaterMark: number): PoolAlert[] {
  if (s.mode === 'fail') return ['fail'];
  const alerts: PoolAlert[] = [];
  if (s.totalDataBlocks - s.usedDataBlocks <= lowWaterMark) alerts.push('lowWater');
  if (s.metadataLowWatermark !== undefined && s.totalMetadataBlocks - s.usedMetadataBlocks < s.metadataLowWatermark)
    alerts.push('metadataLowWater');
  if (s.mode === 'out_of_data_space') alerts.push('outOfDataSpace');
  if (s.mode === 'ro') alerts.push('readOnly');
  if (s.needsCheck) alerts.push('needsCheck');
  return alerts;
}

/** Used, total and available bytes of one of a pool's two spaces. */
export interface SpaceUsage {
  /** Bytes. */
  used: number;
  total: number;
  /**
   * Bytes that can still be written: total − used, and for a loop-backed
   * pool at most what the filesystem holding the sparse file has free (as
   * Docker reported it): a 100G file on a disk with 2G free has 2G available.
   */
  available: number;
  /** Loop-backed pools: free bytes of the filesystem that holds the file. */
  hostFree?: number;
}

/** What the pool has mapped of one thin device (moby's GetDeviceStatus, containerd's Usage). */
export interface ThinUsage {
  thinId: number;
  mappedSectors: number;
  /** mappedSectors × 512. */
  mappedBytes: number;
  /** null when nothing is mapped yet. */
  highestMappedSector: number | null;
  /** Where the figures came from: the id's active device, or a short read-only activation. */
  source: 'active' | 'activation';
}

/** Data and metadata space of a pool, in bytes. */
export interface PoolUsage {
  data: SpaceUsage;
  metadata: SpaceUsage;
}

/** The thin-pool status line's params as a PoolStatus; a failed pool is mode 'fail' with zero counters. */
export function toPoolStatus(params: string, lowWaterMark: number): PoolStatus {
  const s = poolGrammar.parseStatus(params);
  if (s.state !== 'ok') {
    return {
      mode: 'fail',
      transactionId: 0,
      usedMetadataBlocks: 0,
      totalMetadataBlocks: 0,
      usedDataBlocks: 0,
      totalDataBlocks: 0,
      heldMetadataRoot: null,
      needsCheck: false,
      discardPassdown: false,
      errorIfNoSpace: false,
      alerts: ['fail'],
      raw: params,
    };
  }
  const { state: _state, ...rest } = s;
  return { ...rest, alerts: poolAlerts(rest, lowWaterMark), raw: params };
}

/**
 * Bytes used, total and available from a status. `free`: for a loop-backed
 * pool, the free bytes of the filesystems holding its data and metadata
 * files, which cap `available` (as Docker reported it).
 */
export function toPoolUsage(s: PoolStatus, blockSize: number, free?: { data: number; metadata: number }): PoolUsage {
  const space = (used: number, total: number, unit: number, hostFree: number | undefined): SpaceUsage => {
    const left = (total - used) * unit;
    if (hostFree === undefined) return { used: used * unit, total: total * unit, available: left };
    return { used: used * unit, total: total * unit, available: Math.min(left, hostFree), hostFree };
  };
  return {
    data: space(s.usedDataBlocks, s.totalDataBlocks, blockSize, free?.data),
    metadata: space(s.usedMetadataBlocks, s.totalMetadataBlocks, METADATA_BLOCK_SIZE, free?.metadata),
  };
}

/** A thin status (mapped sectors, highest mapped sector) as ThinUsage. */
export function toThinUsage(
  thinId: number,
  s: { mappedSectors: number; highestMappedSector: number | null },
  source: ThinUsage['source'],
): ThinUsage {
  return {
    thinId,
    mappedSectors: s.mappedSectors,
    mappedBytes: s.mappedSectors * SECTOR,
    highestMappedSector: s.highestMappedSector,
    source,
  };
}
