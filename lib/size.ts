// Sizes cross the API as bytes; where a person types them (options objects,
// the CLI) strings such as "100G", "512MiB", "64k" or "2 GB" are accepted,
// in binary units as Docker's dm.* options were.
import bytes from 'bytes';
import { invalidArg } from './errors';
import { checkUint } from './validate';

const SIZE = /^\s*(\d+(?:\.\d+)?)\s*(?:([kmgtp])(?:i?b)?|(b))?\s*$/i;

/** Bytes from a number of bytes or a size string; a safe non-negative integer. */
export function parseSize(value: unknown, field: string): number {
  if (typeof value === 'number') return checkUint(value, field);
  if (typeof value !== 'string') throw invalidArg(field, `expected bytes or a size such as '100G', got ${typeof value}`);
  const m = SIZE.exec(value);
  if (!m) throw invalidArg(field, `'${value}' is not a size such as 100G, 512M, 64K or a number of bytes`);
  // bytes knows 'kb', 'mb', ... and silently misreads a bare 'G': spell the unit out.
  const n = m[2] ? bytes.parse(`${m[1]}${m[2]}b`) : Number(m[1]);
  if (n === null || !Number.isSafeInteger(n)) throw invalidArg(field, `'${value}' is not a whole number of bytes that fits`);
  return n;
}
