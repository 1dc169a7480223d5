// Whether a pool can take another device: writable, and with at least
// minFreeSpace percent of its data and metadata free (Docker's
// dm.min_free_space). Pure: the caller reads the status (once per create).
import { DmError } from '../errors';
import { humanSize } from '../format';
import { METADATA_BLOCK_SIZE, type PoolStatus } from '../pool/index';

/** `status` back when the pool has room; else ERR_DM_POOL_FULL (or EROFS, EIO-like modes) with what to do. */
export function checkPoolSpace(status: PoolStatus, pool: { name: string; blockSize: number }, minFreeSpace: number): PoolStatus {
  const s = status;
  if (s.mode !== 'rw') {
    const why = { out_of_data_space: 'is out of data space', ro: 'is read-only (metadata trouble)', fail: 'has failed' }[s.mode];
    const advice =
      s.mode === 'out_of_data_space'
        ? `grow it (pool.resize({ dataSize }) or 'devmapper pool resize --data-size SIZE')`
        : 'check its metadata (thin_check) and reload it';
    throw new DmError(`pool '${pool.name}' ${why}: ${advice}`, {
      code: s.mode === 'out_of_data_space' ? 'ERR_DM_POOL_FULL' : 'EROFS',
      device: pool.name,
    });
  }
  const space = [
    ['data', s.usedDataBlocks * pool.blockSize, s.totalDataBlocks * pool.blockSize],
    ['metadata', s.usedMetadataBlocks * METADATA_BLOCK_SIZE, s.totalMetadataBlocks * METADATA_BLOCK_SIZE],
  ] as const;
  for (const [what, used, total] of space) {
    if ((total - used) * 100 < total * minFreeSpace) {
      throw new DmError(
        `pool '${pool.name}' has ${humanSize(total - used)} of ${humanSize(total)} ${what} space free, below the minimum of ${minFreeSpace}%: ` +
          `grow it (pool.resize({ ${what}Size }) or 'devmapper pool resize --${what}-size SIZE'), remove devices, or lower minFreeSpace`,
        { code: 'ERR_DM_POOL_FULL', device: pool.name },
      );
    }
  }
  return s;
}
