// thin:   <pool dev> <dev id> [<external origin dev>]
// status: <nr mapped sectors> <highest mapped sector|->, or "Fail" (pool failed) or "Error" (metadata read failed)
//   (dm-thin.c thin_status; the docs mention neither word)
import { checkCount, checkWord, joinWords, Tokens, type TargetGrammar } from './grammar';

/** The thin target's table parameters. */
export interface ThinParams {
  poolDevice: string;
  /** The thin device id inside the pool (0 .. 2^24-1). */
  thinId: number;
  /** A read-only device providing blocks this thin device has never written. */
  externalOrigin?: string;
}

/** The thin target's status: mapped sectors, or failed. */
export type ThinStatus =
  | { state: 'ok'; mappedSectors: number; /** null when nothing is mapped yet */ highestMappedSector: number | null }
  | { state: 'fail' }
  | { state: 'error' };

const TYPE = 'thin';

/** The thin target's grammar. */
export const thin: TargetGrammar<ThinParams, ThinStatus> = {
  type: TYPE,
  format(p) {
    return joinWords(
      checkWord(TYPE, 'poolDevice', p.poolDevice),
      checkCount(TYPE, 'thinId', p.thinId),
      p.externalOrigin === undefined ? '' : checkWord(TYPE, 'externalOrigin', p.externalOrigin),
    );
  },
  parse(text) {
    const t = new Tokens(TYPE, 'table', text);
    if (t.peek() === 'Fail' && t.remaining === 1) throw t.fail('the pool has failed, and the kernel prints "Fail" in place of the table');
    const p: ThinParams = { poolDevice: t.word('pool device'), thinId: t.uint('thin id') };
    if (!t.done) p.externalOrigin = t.word('external origin');
    t.end();
    return p;
  },
  parseStatus(text) {
    const t = new Tokens(TYPE, 'status', text);
    const failed = t.failed();
    if (failed) return failed;
    const mappedSectors = t.uint('mapped sectors');
    const highest = t.peek() === '-' ? (t.word('highest mapped sector'), null) : t.uint('highest mapped sector');
    t.end();
    return { state: 'ok', mappedSectors, highestMappedSector: highest };
  },
};

/** A thin status back to the kernel's text (the inverse of thin.parseStatus). */
export function formatThinStatus(s: ThinStatus): string {
  if (s.state === 'fail') return 'Fail';
  if (s.state === 'error') return 'Error';
  return joinWords(s.mappedSectors, s.highestMappedSector ?? '-');
}
