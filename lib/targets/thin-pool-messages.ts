// The thin-pool target's messages (the kernel's thin-provisioning.rst), as
// the text DM_TARGET_MSG carries and the advice for the errnos each meets.
// No other file writes a thin-pool message by hand.
import type { ThinId } from '../validate';
import { checkCount } from './grammar';

export interface PoolMessage {
  /** The message text, e.g. 'create_thin 7'. */
  readonly text: string;
  /** Advice by errno name, appended to the kernel's error. */
  readonly hints: Readonly<Partial<Record<string, string>>>;
}

const id = (field: string, value: number) => checkCount('thin-pool', field, value);

/** `create_thin ID`: a new thin device with no blocks. */
export function createThin(pool: string, thinId: ThinId): PoolMessage {
  return { text: `create_thin ${id('thinId', thinId)}`, hints: { EEXIST: `thin id ${thinId} already exists in pool '${pool}'` } };
}

/** `create_snap ID ORIGIN`: a snapshot of `originThinId`, whose active devices must be suspended meanwhile. */
export function createSnap(pool: string, thinId: ThinId, originThinId: ThinId): PoolMessage {
  return {
    text: `create_snap ${id('thinId', thinId)} ${id('originThinId', originThinId)}`,
    hints: {
      EEXIST: `thin id ${thinId} already exists in pool '${pool}'`,
      ENODATA: `origin thin id ${originThinId} does not exist in pool '${pool}'`,
    },
  };
}

/** `delete ID`: the thin device and the blocks only it maps. */
export function deleteThin(pool: string, thinId: ThinId): PoolMessage {
  return {
    text: `delete ${id('thinId', thinId)}`,
    hints: {
      ENODATA: `thin id ${thinId} does not exist in pool '${pool}'`,
      EBUSY: `thin id ${thinId} is still open in the kernel (a device on it is active, or being removed)`,
    },
  };
}

/** `set_transaction_id FROM TO`: fails with EINVAL unless the pool is at FROM. */
export function setTransactionId(from: number, to: number): PoolMessage {
  return { text: `set_transaction_id ${id('from', from)} ${id('to', to)}`, hints: { EINVAL: `the pool's transaction id is not ${from}` } };
}

/** `reserve_metadata_snap`: hold a metadata snapshot for thin_dump --metadata-snap. */
export function reserveMetadataSnap(): PoolMessage {
  return {
    text: 'reserve_metadata_snap',
    hints: { EBUSY: 'a metadata snapshot is already held; release it first (pool.releaseMetadataSnap())' },
  };
}

/** `release_metadata_snap`. */
export function releaseMetadataSnap(): PoolMessage {
  return { text: 'release_metadata_snap', hints: { EINVAL: 'no metadata snapshot is held' } };
}
