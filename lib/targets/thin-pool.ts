// thin-pool: <metadata dev> <data dev> <data block size (sectors)> <low water mark (blocks)> [<#features> <feature>...]
// status:    <transaction id> <used>/<total metadata blocks> <used>/<total data blocks> <held metadata root|->
//            ro|rw|out_of_data_space ignore_discard|[no_]discard_passdown error|queue_if_no_space needs_check|-
//            [<metadata low watermark>], or just "Fail" / "Error".
//   (Documentation/admin-guide/device-mapper/thin-provisioning.rst; ignore_discard is only in dm-thin.c.
//   Tables come back with the feature count always printed and the features in the kernel's own order.)
import { checkCount, checkWord, formatCounted, joinWords, Tokens, type TargetGrammar } from './grammar';

/** A thin-pool table feature argument. */
export type ThinPoolFeature =
  'skip_block_zeroing' | 'ignore_discard' | 'no_discard_passdown' | 'read_only' | 'error_if_no_space' | (string & {});

/** The thin-pool target's table parameters. */
export interface ThinPoolParams {
  metadataDevice: string;
  dataDevice: string;
  /** Data block size in 512-byte sectors (128 = 64 KiB). */
  dataBlockSectors: number;
  /** Free data blocks below which the pool raises an event. */
  lowWaterMark: number;
  /** Feature arguments, in table order (the kernel prints them back in its own fixed order). */
  features: ThinPoolFeature[];
}

/** The pool's mode as its status reports it. */
export type ThinPoolMode = 'rw' | 'ro' | 'out_of_data_space';

/** The thin-pool status line's fields when the pool has not failed. */
export interface ThinPoolHealthyStatus {
  state: 'ok';
  transactionId: number;
  usedMetadataBlocks: number;
  totalMetadataBlocks: number;
  usedDataBlocks: number;
  totalDataBlocks: number;
  /** Root of the held metadata snapshot (reserve_metadata_snap), or null. */
  heldMetadataRoot: number | null;
  mode: ThinPoolMode;
  /** Discards are passed down to the data device (false also when they are ignored altogether). */
  discardPassdown: boolean;
  /** Present (true) when the pool ignores discards: the kernel prints ignore_discard in place of [no_]discard_passdown. */
  ignoreDiscard?: true;
  /** true: error_if_no_space; false: queue_if_no_space. */
  errorIfNoSpace: boolean;
  needsCheck: boolean;
  /** Free metadata blocks below which the pool raises an event (absent on older kernels). */
  metadataLowWatermark?: number;
}

/** The thin-pool target's status: healthy counters, or failed. */
export type ThinPoolStatus = ThinPoolHealthyStatus | { state: 'fail' } | { state: 'error' };

const TYPE = 'thin-pool';

/** The thin-pool target's grammar. */
export const thinPool: TargetGrammar<ThinPoolParams, ThinPoolStatus> = {
  type: TYPE,
  format(p) {
    return joinWords(
      checkWord(TYPE, 'metadataDevice', p.metadataDevice),
      checkWord(TYPE, 'dataDevice', p.dataDevice),
      checkCount(TYPE, 'dataBlockSectors', p.dataBlockSectors),
      checkCount(TYPE, 'lowWaterMark', p.lowWaterMark),
      formatCounted(p.features.map((f) => checkWord(TYPE, 'feature', f))),
    );
  },
  parse(text) {
    const t = new Tokens(TYPE, 'table', text);
    const p: ThinPoolParams = {
      metadataDevice: t.word('metadata device'),
      dataDevice: t.word('data device'),
      dataBlockSectors: t.uint('data block size'),
      lowWaterMark: t.uint('low water mark'),
      features: t.counted('feature'),
    };
    t.end();
    return p;
  },
  parseStatus(text) {
    const t = new Tokens(TYPE, 'status', text);
    const failed = t.failed();
    if (failed) return failed;
    const transactionId = t.uint('transaction id');
    const [usedMetadataBlocks, totalMetadataBlocks] = t.ratio('metadata blocks');
    const [usedDataBlocks, totalDataBlocks] = t.ratio('data blocks');
    const heldMetadataRoot = t.peek() === '-' ? (t.word('held metadata root'), null) : t.uint('held metadata root');
    const mode = t.oneOf('mode', ['rw', 'ro', 'out_of_data_space'] as const);
    // ignore_discard takes the place of the passdown word (the docs omit it).
    const discard = t.oneOf('discard mode', ['discard_passdown', 'no_discard_passdown', 'ignore_discard'] as const);
    const s: ThinPoolHealthyStatus = {
      state: 'ok',
      transactionId,
      usedMetadataBlocks,
      totalMetadataBlocks,
      usedDataBlocks,
      totalDataBlocks,
      heldMetadataRoot,
      mode,
      discardPassdown: discard === 'discard_passdown',
      ...(discard === 'ignore_discard' ? { ignoreDiscard: true as const } : {}),
      errorIfNoSpace: t.oneOf('no-space policy', ['error_if_no_space', 'queue_if_no_space'] as const) === 'error_if_no_space',
      needsCheck: t.oneOf('needs_check', ['needs_check', '-'] as const) === 'needs_check',
    };
    if (!t.done) s.metadataLowWatermark = t.uint('metadata low watermark');
    t.end();
    return s;
  },
};

/** Format a healthy status back into the kernel's text (for tests and fakes). */
export function formatThinPoolStatus(s: ThinPoolStatus): string {
  if (s.state === 'fail') return 'Fail';
  if (s.state === 'error') return 'Error';
  return joinWords(
    s.transactionId,
    `${s.usedMetadataBlocks}/${s.totalMetadataBlocks}`,
    `${s.usedDataBlocks}/${s.totalDataBlocks}`,
    s.heldMetadataRoot === null ? '-' : s.heldMetadataRoot,
    s.mode,
    s.ignoreDiscard ? 'ignore_discard' : s.discardPassdown ? 'discard_passdown' : 'no_discard_passdown',
    s.errorIfNoSpace ? 'error_if_no_space' : 'queue_if_no_space',
    s.needsCheck ? 'needs_check' : '-',
    s.metadataLowWatermark ?? '',
  );
}
