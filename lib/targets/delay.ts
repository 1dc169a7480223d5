// delay: <dev> <offset> <delay ms> [<write dev> <write offset> <write delay> [<flush dev> <flush offset> <flush delay>]]
// status: <reads> <writes> [<flushes>]: bios held back right now, not totals (older kernels: no flushes)
//   (dm-delay.c delay_status; Documentation/admin-guide/device-mapper/delay.rst)
import { invalidArg } from '../errors';
import { checkCount, checkWord, joinWords, Tokens, type TargetGrammar } from './grammar';

/** One class (read, write or flush) of the delay target. */
export interface DelayClass {
  device: string;
  /** Start sector on `device`. */
  offset: number;
  /** Milliseconds each bio of this class waits (0: passed straight through, never counted). */
  delayMs: number;
}

/** The delay target's table parameters. */
export interface DelayParams {
  /** Reads (and, without `write`, everything). */
  read: DelayClass;
  /** Writes (and, without `flush`, flushes). */
  write?: DelayClass;
  /** Flushes; only with `write`. */
  flush?: DelayClass;
}

/** Bios of each class being held back at the moment (the kernel's counters drop as they are released). */
export interface DelayStatus {
  reads: number;
  writes: number;
  /** Absent on kernels without a flush class. */
  flushes?: number;
}

const TYPE = 'delay';

const formatClass = (c: DelayClass, field: string) =>
  joinWords(
    checkWord(TYPE, `${field}.device`, c.device),
    checkCount(TYPE, `${field}.offset`, c.offset),
    checkCount(TYPE, `${field}.delayMs`, c.delayMs),
  );

function readClass(t: Tokens, what: string): DelayClass {
  return { device: t.word(`${what} device`), offset: t.uint(`${what} offset`), delayMs: t.uint(`${what} delay`) };
}

/** The delay target's grammar. */
export const delay: TargetGrammar<DelayParams, DelayStatus> = {
  type: TYPE,
  format(p) {
    if (p.flush && !p.write) throw invalidArg('delay flush', 'a flush class needs a write class');
    return joinWords(
      formatClass(p.read, 'read'),
      p.write ? formatClass(p.write, 'write') : '',
      p.flush ? formatClass(p.flush, 'flush') : '',
    );
  },
  parse(text) {
    const t = new Tokens(TYPE, 'table', text);
    const p: DelayParams = { read: readClass(t, 'read') };
    if (!t.done) p.write = readClass(t, 'write');
    if (!t.done) p.flush = readClass(t, 'flush');
    t.end();
    return p;
  },
  parseStatus(text) {
    const t = new Tokens(TYPE, 'status', text);
    const s: DelayStatus = { reads: t.uint('delayed reads'), writes: t.uint('delayed writes') };
    if (!t.done) s.flushes = t.uint('delayed flushes');
    t.end();
    return s;
  },
};

/** A delay status back to the kernel's text (the inverse of delay.parseStatus). */
export function formatDelayStatus(s: DelayStatus): string {
  return joinWords(s.reads, s.writes, s.flushes ?? '');
}
