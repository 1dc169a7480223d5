// The --json shapes as docs/cli-json.md writes them, and a check of a value
// against one: exactly the documented keys, each of its documented type.
// Shared by the unit tests (shape builders) and the kernel tests (the CLI).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export type Shape = string | Shape[] | { [key: string]: Shape };

/** Each documented verb ("info", "loop ls", "set usage") and its shape. */
export function documentedShapes(): Map<string, Shape> {
  const text = readFileSync(join(__dirname, '..', 'docs', 'cli-json.md'), 'utf8');
  const shapes = new Map<string, Shape>();
  for (const m of text.matchAll(/^### `([a-z]+(?: [a-z]+)*)(?: [A-Z[-][^`]*)?`\n([\s\S]*?)^```json\n([\s\S]*?)^```$/gm)) {
    if (m[2]!.includes('### ')) throw new Error(`docs/cli-json.md: the section before ${m[1]} has no json block`);
    shapes.set(m[1]!, JSON.parse(m[3]!) as Shape);
  }
  return shapes;
}

const TYPES: Record<string, (v: unknown) => boolean> = {
  string: (v) => typeof v === 'string',
  number: (v) => typeof v === 'number' && Number.isFinite(v),
  boolean: (v) => typeof v === 'boolean',
  null: (v) => v === null,
  version: (v) => typeof v === 'string' && /^\d+\.\d+\.\d+$/.test(v),
  object: (v) => typeof v === 'object' && v !== null && !Array.isArray(v),
};

/** What is wrong with `value` as `shape` ([] when nothing): missing or extra keys, wrong types. */
export function shapeProblems(value: unknown, shape: Shape, at = '$'): string[] {
  if (typeof shape === 'string') {
    const types = shape.split('|').map((t) => t.trim());
    for (const t of types) if (!TYPES[t]) throw new Error(`unknown type '${t}' in shape at ${at}`);
    return types.some((t) => TYPES[t]!(value)) ? [] : [`${at}: ${JSON.stringify(value)} is not ${shape}`];
  }
  if (Array.isArray(shape)) {
    if (!Array.isArray(value)) return [`${at}: expected a list, got ${JSON.stringify(value)}`];
    return value.flatMap((v, i) => shapeProblems(v, shape[0]!, `${at}[${i}]`));
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return [`${at}: expected an object, got ${JSON.stringify(value)}`];
  const v = value as Record<string, unknown>;
  return [
    ...Object.keys(shape)
      .filter((k) => !(k in v))
      .map((k) => `${at}.${k}: missing`),
    ...Object.keys(v)
      .filter((k) => !(k in shape))
      .map((k) => `${at}.${k}: not documented`),
    ...Object.keys(shape)
      .filter((k) => k in v)
      .flatMap((k) => shapeProblems(v[k], shape[k]!, `${at}.${k}`)),
  ];
}
