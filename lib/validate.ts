// Input checks that run before any ioctl. Each failure is a DmError with
// code ERR_DM_INVALID_ARG naming the field.
import { invalidArg } from './errors';

/** The kernel's limits from <linux/dm-ioctl.h>, less the terminating NUL. */
export const DM_NAME_MAX = 127;
export const DM_UUID_MAX = 128;
export const DM_TYPE_MAX = 15;

const utf8 = (s: string) => Buffer.byteLength(s, 'utf8');

// Printable ASCII without white space: names become /dev/mapper/NAME nodes and
// appear in whitespace-separated kernel and dmsetup output.
const PRINTABLE = /^[\x21-\x7e]+$/;

declare const brand: unique symbol;
/** A value that has passed its check at the public surface; the layers inside take these, not raw input. */
export type Checked<T, Name extends string> = T & { readonly [brand]: Name };
/** A device-mapper device name, checked (checkName). */
export type DmName = Checked<string, 'DmName'>;
/** A thin device's id in its pool (0..2^24-1), checked (checkThinId). */
export type ThinId = Checked<number, 'ThinId'>;
/** A length in 512-byte sectors, checked: a whole, positive count made from bytes that were checked. */
export type Sectors = Checked<number, 'Sectors'>;

export function checkName(name: unknown, field = 'name'): DmName {
  if (typeof name !== 'string') throw invalidArg(field, `expected a string, got ${typeof name}`);
  if (name.length === 0) throw invalidArg(field, 'must not be empty');
  if (utf8(name) > DM_NAME_MAX) throw invalidArg(field, `'${name.slice(0, 20)}…' is ${utf8(name)} bytes; the kernel allows ${DM_NAME_MAX}`);
  if (!PRINTABLE.test(name)) throw invalidArg(field, `${JSON.stringify(name)} must be printable ASCII without white space`);
  if (name.includes('/')) throw invalidArg(field, `'${name}' must not contain '/'`);
  if (name === '.' || name === '..') throw invalidArg(field, `'${name}' is not a valid device name`);
  // /dev/mapper/control is the control node itself.
  if (name === 'control') throw invalidArg(field, "'control' is reserved: /dev/mapper/control is the device-mapper control node");
  return name as DmName;
}

export function checkUuid(uuid: unknown, field = 'uuid'): string {
  if (typeof uuid !== 'string') throw invalidArg(field, `expected a string, got ${typeof uuid}`);
  if (uuid.length === 0) throw invalidArg(field, 'must not be empty');
  if (utf8(uuid) > DM_UUID_MAX) throw invalidArg(field, `is ${utf8(uuid)} bytes; the kernel allows ${DM_UUID_MAX}`);
  if (!PRINTABLE.test(uuid)) throw invalidArg(field, `${JSON.stringify(uuid)} must be printable ASCII without white space`);
  return uuid;
}

/** A safe, non-negative integer (sectors, bytes, offsets). */
export function checkUint(value: unknown, field: string, { min = 0, max = Number.MAX_SAFE_INTEGER } = {}): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw invalidArg(field, `expected a safe integer, got ${String(value)}`);
  if (value < min) throw invalidArg(field, `${value} is below ${min}`);
  if (value > max) throw invalidArg(field, `${value} is above ${max}`);
  return value;
}

export const checkU32 = (value: unknown, field: string) => checkUint(value, field, { max: 0xffffffff });

export function checkTargetType(type: unknown, field = 'type'): string {
  if (typeof type !== 'string' || type.length === 0) throw invalidArg(field, 'must be a non-empty string');
  if (type.length > DM_TYPE_MAX) throw invalidArg(field, `'${type}' is longer than ${DM_TYPE_MAX} bytes`);
  if (!/^[A-Za-z0-9_-]+$/.test(type)) throw invalidArg(field, `'${type}' may hold only letters, digits, '-' and '_'`);
  return type;
}

/** Text the kernel reads as one line: no NUL, no newline. */
export function checkLine(text: unknown, field: string, { allowEmpty = true } = {}): string {
  if (typeof text !== 'string') throw invalidArg(field, `expected a string, got ${typeof text}`);
  if (!allowEmpty && text.length === 0) throw invalidArg(field, 'must not be empty');
  if (/[\0\n\r]/.test(text)) throw invalidArg(field, 'must not contain NUL or line breaks');
  return text;
}

export function checkPath(path: unknown, field: string): string {
  if (typeof path !== 'string' || path.length === 0) throw invalidArg(field, 'must be a non-empty path');
  if (path.includes('\0')) throw invalidArg(field, 'must not contain NUL');
  return path;
}

export function checkBoolean(value: unknown, field: string): boolean | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean') throw invalidArg(field, `expected a boolean, got ${typeof value}`);
  return value;
}

export function checkOptions<T extends object>(options: unknown, field: string, known: readonly string[]): Partial<T> {
  if (options === undefined) return {};
  if (typeof options !== 'object' || options === null || Array.isArray(options)) throw invalidArg(field, 'expected an options object');
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) throw invalidArg(field, `unknown option '${key}' (known: ${known.join(', ')})`);
  }
  return options as Partial<T>;
}
