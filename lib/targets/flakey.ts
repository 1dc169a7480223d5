// flakey: <dev> <offset> <up interval (s)> <down interval (s)> [<#feature args> <arg>...]
//   features: drop_writes | error_writes | corrupt_bio_byte <Nth byte> <r|w> <value> <flags>
//   (newer kernels add more); status empty.   (dm-flakey.c, Documentation/admin-guide/device-mapper/dm-flakey.rst)
// The kernel prints the count even when it is 0, and the features in its own order: drop_writes or
// error_writes (never both) before corrupt_bio_byte.
import { checkCount, checkWord, formatCounted, joinWords, Tokens, type TargetGrammar } from './grammar';

/** The flakey target's table parameters. */
export interface FlakeyParams {
  device: string;
  offset: number;
  /** Seconds the device behaves. */
  upInterval: number;
  /** Seconds it misbehaves (drops or errors I/O). */
  downInterval: number;
  /**
   * Feature arguments as the kernel counts them, e.g. ['drop_writes'] or
   * ['corrupt_bio_byte', '32', 'r', '1', '0'] (build them with flakeyFeatures).
   * Kept as words so features this library does not know still round-trip.
   */
  features: string[];
}

/** Feature arguments for the common cases. */
export const flakeyFeatures = {
  /** Writes are silently dropped while the device is down. */
  dropWrites: (): string[] => ['drop_writes'],
  /** Writes fail with EIO while the device is down. */
  errorWrites: (): string[] => ['error_writes'],
  /** Byte `nthByte` of each matching bio is set to `value` (direction 'r' or 'w') while the device is down. */
  corruptBioByte: (nthByte: number, direction: 'r' | 'w', value: number, flags = 0): string[] => [
    'corrupt_bio_byte',
    String(nthByte),
    direction,
    String(value),
    String(flags),
  ],
};

const TYPE = 'flakey';

/** The flakey target's grammar. */
export const flakey: TargetGrammar<FlakeyParams, Record<string, never>> = {
  type: TYPE,
  format(p) {
    return joinWords(
      checkWord(TYPE, 'device', p.device),
      checkCount(TYPE, 'offset', p.offset),
      checkCount(TYPE, 'upInterval', p.upInterval),
      checkCount(TYPE, 'downInterval', p.downInterval),
      formatCounted(p.features.map((f) => checkWord(TYPE, 'feature', f))),
    );
  },
  parse(text) {
    const t = new Tokens(TYPE, 'table', text);
    const p: FlakeyParams = {
      device: t.word('device'),
      offset: t.uint('offset'),
      upInterval: t.uint('up interval'),
      downInterval: t.uint('down interval'),
      features: t.counted('feature'),
    };
    t.end();
    return p;
  },
  parseStatus(text) {
    new Tokens(TYPE, 'status', text).end();
    return {};
  },
};
