// thin:   <pool dev> <dev id> [<external origin dev>]
// status: <nr mapped sectors> <highest mapped sector|-> , or "Fail"
import { checkCount, checkWord, joinWords, Tokens, type TargetGrammar } from './grammar';

export interface ThinParams {
  poolDevice: string;
  /** The thin device id inside the pool (0 .. 2^24-1). */
  deviceId: number;
  /** A read-only device providing blocks this thin device has never written. */
  externalOrigin?: string;
}

export type ThinStatus =
  | { state: 'ok'; mappedSectors: number; /** null when nothing is mapped yet */ highestMappedSector: number | null }
  | { state: 'fail' };

const TYPE = 'thin';

export const thin: TargetGrammar<ThinParams, ThinStatus> = {
  type: TYPE,
  format(p) {
    return joinWords(
      checkWord(TYPE, 'poolDevice', p.poolDevice),
      checkCount(TYPE, 'deviceId', p.deviceId),
      p.externalOrigin === undefined ? '' : checkWord(TYPE, 'externalOrigin', p.externalOrigin),
    );
  },
  parse(text) {
    const t = new Tokens(TYPE, 'table', text);
    const p: ThinParams = { poolDevice: t.word('pool device'), deviceId: t.uint('device id') };
    if (!t.done) p.externalOrigin = t.word('external origin');
    t.end();
    return p;
  },
  parseStatus(text) {
    const t = new Tokens(TYPE, 'status', text);
    if (t.peek() === 'Fail') {
      t.word('state');
      t.end();
      return { state: 'fail' };
    }
    const mappedSectors = t.uint('mapped sectors');
    const highest = t.peek() === '-' ? (t.word('highest mapped sector'), null) : t.uint('highest mapped sector');
    t.end();
    return { state: 'ok', mappedSectors, highestMappedSector: highest };
  },
};

export function formatThinStatus(s: ThinStatus): string {
  return s.state === 'fail' ? 'Fail' : joinWords(s.mappedSectors, s.highestMappedSector ?? '-');
}
