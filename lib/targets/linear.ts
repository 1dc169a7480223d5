// linear: <dev> <offset (sectors)>; status: empty.
// zero and error: no parameters; status: empty.
import { checkCount, checkWord, joinWords, Tokens, type TargetGrammar } from './grammar';

/** The linear target's table parameters. */
export interface LinearParams {
  device: string;
  /** Start sector on `device`. */
  offset: number;
}

/** The linear target's grammar. */
export const linear: TargetGrammar<LinearParams, Record<string, never>> = {
  type: 'linear',
  format(p) {
    return joinWords(checkWord('linear', 'device', p.device), checkCount('linear', 'offset', p.offset));
  },
  parse(text) {
    const t = new Tokens('linear', 'table', text);
    const p = { device: t.word('device'), offset: t.uint('offset') };
    t.end();
    return p;
  },
  parseStatus(text) {
    new Tokens('linear', 'status', text).end();
    return {};
  },
};

function parameterless(type: 'zero' | 'error'): TargetGrammar<Record<string, never>, Record<string, never>> {
  return {
    type,
    format: () => '',
    parse(text) {
      new Tokens(type, 'table', text).end();
      return {};
    },
    parseStatus(text) {
      new Tokens(type, 'status', text).end();
      return {};
    },
  };
}

/** The zero target's grammar (reads zeros, discards writes). */
export const zero = parameterless('zero');
/** The error target's grammar (fails all I/O). */
export const error = parameterless('error');
