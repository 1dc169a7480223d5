// How the CLI prints: JSON (stable keys, sizes in bytes) under --json,
// aligned columns and docker-style sizes otherwise.
export interface OutputOptions {
  json?: boolean;
}

export function emit(o: OutputOptions, value: unknown, human: () => string): void {
  if (o.json) console.log(JSON.stringify(value, null, 2));
  else {
    const text = human();
    if (text) console.log(text);
  }
}

/** Rows under a header, each column padded to its widest cell. */
export function columns(header: string[], rows: Array<Array<string | number>>): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

/** ` Key: value` lines, as docker info printed its storage block. */
export function keyValues(pairs: Array<[string, string | number | boolean | undefined]>): string {
  return pairs
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => ` ${k}: ${String(v)}`)
    .join('\n');
}
