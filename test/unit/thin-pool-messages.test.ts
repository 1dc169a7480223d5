import { describe, expect, it } from 'vitest';
import * as msg from '../../lib/targets/thin-pool-messages';
import type { ThinId } from '../../lib/validate';

describe('thin-pool messages', () => {
  it('format as the kernel takes them, with advice for their errnos', () => {
    expect(msg.createThin('p', 7 as ThinId)).toEqual({ text: 'create_thin 7', hints: { EEXIST: "thin id 7 already exists in pool 'p'" } });
    expect(msg.createSnap('p', 8 as ThinId, 7 as ThinId).text).toBe('create_snap 8 7');
    expect(msg.createSnap('p', 8 as ThinId, 7 as ThinId).hints.ENODATA).toContain('origin thin id 7');
    expect(msg.deleteThin('p', 8 as ThinId).text).toBe('delete 8');
    expect(msg.deleteThin('p', 8 as ThinId).hints.EBUSY).toContain('still open');
    expect(msg.setTransactionId(3, 4)).toMatchObject({
      text: 'set_transaction_id 3 4',
      hints: { EINVAL: "the pool's transaction id is not 3" },
    });
    expect(msg.reserveMetadataSnap().text).toBe('reserve_metadata_snap');
    expect(msg.releaseMetadataSnap().text).toBe('release_metadata_snap');
  });

  it('refuse ids that are not counts', () => {
    for (const bad of [-1, 1.5, Number.NaN, 2 ** 53])
      expect(() => msg.createThin('p', bad as ThinId)).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_ARG' }));
    expect(() => msg.createSnap('p', 1 as ThinId, -2 as ThinId)).toThrow(/originThinId/);
  });
});
