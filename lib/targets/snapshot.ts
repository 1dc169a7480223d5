// snapshot:        <origin> <COW device> P|N|PO <chunk size (sectors)> [<#features> <feature>...]
//   (P persistent, N transient, PO persistent with overflow; the kernel reads it case-blind and prints it
//   upper case; it prints features only when there are some, in its own order)
// status:          <allocated>/<total sectors> <metadata sectors>, or Invalid | Merge failed | Overflow | Unknown
//   (all in sectors of the COW device: total is its size, allocated includes the metadata)
// snapshot-origin: <origin>; status empty.   (dm-snap.c, Documentation/admin-guide/device-mapper/snapshot.rst)
import { invalidArg } from '../errors';
import { checkCount, checkWord, formatCounted, joinWords, Tokens, type TargetGrammar } from './grammar';

/** Whether a snapshot's exception store is persistent (P), transient (N) or overflow-allowing (PO). */
export type SnapshotPersistence = 'P' | 'N' | 'PO';
/** A snapshot table feature argument. */
export type SnapshotFeature = 'discard_zeroes_cow' | 'discard_passdown_origin' | (string & {});

/** The snapshot target's table parameters. */
export interface SnapshotParams {
  origin: string;
  /** The copy-on-write store. */
  cow: string;
  persistence: SnapshotPersistence;
  /** Chunk size in sectors. */
  chunkSectors: number;
  /** Feature arguments, in table order (discard_passdown_origin needs discard_zeroes_cow). */
  features: SnapshotFeature[];
}

/** The snapshot target's status. */
export type SnapshotStatus =
  | {
      state: 'ok';
      /** COW sectors in use, metadata included. */
      allocatedSectors: number;
      /** Size of the COW device. */
      totalSectors: number;
      /** COW sectors holding metadata (0 for a transient store). */
      metadataSectors: number;
    }
  /** invalid: the COW store filled up or failed; overflow: full, with PO; unknown: the store cannot tell. */
  | { state: 'invalid' | 'merge-failed' | 'overflow' | 'unknown' };

const TYPE = 'snapshot';
// A Map, not an object: a status of 'constructor' must not find Object.prototype's.
const WORDS = new Map<string, 'invalid' | 'overflow' | 'unknown'>([
  ['Invalid', 'invalid'],
  ['Overflow', 'overflow'],
  ['Unknown', 'unknown'],
]);

/** The snapshot target's grammar. */
export const snapshot: TargetGrammar<SnapshotParams, SnapshotStatus> = {
  type: TYPE,
  format(p) {
    if (!['P', 'N', 'PO'].includes(p.persistence))
      throw invalidArg('snapshot persistence', `${JSON.stringify(p.persistence)} is not P, N or PO`);
    return joinWords(
      checkWord(TYPE, 'origin', p.origin),
      checkWord(TYPE, 'cow', p.cow),
      p.persistence,
      checkCount(TYPE, 'chunkSectors', p.chunkSectors),
      formatCounted(p.features.map((f) => checkWord(TYPE, 'feature', f))),
    );
  },
  parse(text) {
    const t = new Tokens(TYPE, 'table', text);
    const origin = t.word('origin');
    const cow = t.word('COW device');
    const given = t.word('persistence');
    const persistence = given.toUpperCase();
    if (persistence !== 'P' && persistence !== 'N' && persistence !== 'PO') throw t.fail(`persistence '${given}' is not P, N or PO`);
    const p: SnapshotParams = { origin, cow, persistence, chunkSectors: t.uint('chunk size'), features: t.counted('feature') };
    t.end();
    return p;
  },
  parseStatus(text) {
    const t = new Tokens(TYPE, 'status', text);
    const first = t.peek();
    if (first === 'Merge') {
      t.word('state');
      if (t.word('state') !== 'failed') throw t.fail("expected 'Merge failed'");
      t.end();
      return { state: 'merge-failed' };
    }
    const word = first === undefined ? undefined : WORDS.get(first);
    if (word) {
      t.word('state');
      t.end();
      return { state: word };
    }
    const [allocatedSectors, totalSectors] = t.ratio('allocated/total sectors');
    const metadataSectors = t.uint('metadata sectors');
    t.end();
    return { state: 'ok', allocatedSectors, totalSectors, metadataSectors };
  },
};

/** A snapshot status back to the kernel's text (the inverse of snapshot.parseStatus). */
export function formatSnapshotStatus(s: SnapshotStatus): string {
  switch (s.state) {
    case 'ok':
      return `${s.allocatedSectors}/${s.totalSectors} ${s.metadataSectors}`;
    case 'merge-failed':
      return 'Merge failed';
    default:
      return s.state[0]!.toUpperCase() + s.state.slice(1);
  }
}

/** The snapshot-origin target's table parameters. */
export interface SnapshotOriginParams {
  origin: string;
}

/** The snapshot-origin target's grammar. */
export const snapshotOrigin: TargetGrammar<SnapshotOriginParams, Record<string, never>> = {
  type: 'snapshot-origin',
  format: (p) => checkWord('snapshot-origin', 'origin', p.origin),
  parse(text) {
    const t = new Tokens('snapshot-origin', 'table', text);
    const p = { origin: t.word('origin') };
    t.end();
    return p;
  },
  parseStatus(text) {
    new Tokens('snapshot-origin', 'status', text).end();
    return {};
  },
};
