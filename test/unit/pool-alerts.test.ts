import { describe, expect, it } from 'vitest';
import { defaultLowWaterMark } from '../../lib/pool/limits';
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

describe('defaultLowWaterMark', () => {
  it("is Docker's 32768 blocks for a large pool, a tenth of a small one, at least one block", () => {
    expect(defaultLowWaterMark((100 * 2 ** 30) / 65536)).toBe(32768); // Docker's 100G loop file
    expect(defaultLowWaterMark(327680)).toBe(32768);
    expect(defaultLowWaterMark(2048)).toBe(204); // 128 MiB of 64K blocks
    expect(defaultLowWaterMark(5)).toBe(1);
    // A fresh pool of any size is never below its default mark.
    for (const blocks of [1, 9, 10, 100, 4096, 327679, 10 ** 7])
      expect(poolAlerts({ ...base, totalDataBlocks: blocks }, defaultLowWaterMark(blocks))).toEqual(blocks === 1 ? ['lowWater'] : []);
  });
});
