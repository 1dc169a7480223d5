import { describe, expect, it } from 'vitest';
import { poolAlerts, type PoolStatus } from '../../lib/pool/index';

const base: Omit<PoolStatus, 'alerts' | 'raw'> = {
  mode: 'rw',
  transactionId: 0,
  usedMetadataBlocks: 10,
  totalMetadataBlocks: 512,
  usedDataBlocks: 0,
  totalDataBlocks: 1024,
  heldMetadataRoot: null,
  discardPassdown: true,
  errorIfNoSpace: false,
  needsCheck: false,
  metadataLowWatermark: 128,
};

describe('poolAlerts', () => {
  it('is empty for a healthy pool', () => {
    expect(poolAlerts(base, 100)).toEqual([]);
  });
  it('raises lowWater at the kernel boundary: free data blocks <= the mark', () => {
    expect(poolAlerts({ ...base, usedDataBlocks: 923 }, 100)).toEqual([]);
    expect(poolAlerts({ ...base, usedDataBlocks: 924 }, 100)).toEqual(['lowWater']);
  });
  it('raises metadataLowWater below the metadata watermark, and not when the kernel gives none', () => {
    expect(poolAlerts({ ...base, usedMetadataBlocks: 384 }, 0)).toEqual([]);
    expect(poolAlerts({ ...base, usedMetadataBlocks: 385 }, 0)).toEqual(['metadataLowWater']);
    expect(poolAlerts({ ...base, usedMetadataBlocks: 511, metadataLowWatermark: undefined }, 0)).toEqual([]);
  });
  it('names the modes and needs_check, and a failed pool only as fail', () => {
    expect(poolAlerts({ ...base, mode: 'out_of_data_space', usedDataBlocks: 1024 }, 0)).toEqual(['lowWater', 'outOfDataSpace']);
    expect(poolAlerts({ ...base, mode: 'ro', needsCheck: true }, 0)).toEqual(['readOnly', 'needsCheck']);
    expect(poolAlerts({ ...base, mode: 'fail', usedDataBlocks: 1024 }, 0)).toEqual(['fail']);
  });
});
