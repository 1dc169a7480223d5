// dmsetup-style table text: "<start> <length> <type> <params...>" per line.
import type { Target } from '../dm';
import { invalidArg } from '../errors';

export function parseTableText(text: string): Target[] {
  const lines = text
    .split(/[\n;]/)
    .map((l) => l.trim())
    .filter((l) => l !== '');
  if (lines.length === 0) throw invalidArg('--table', 'give at least one line "<start> <length> <type> <params>"');
  return lines.map((line) => {
    const m = /^(\d+)\s+(\d+)\s+(\S+)\s*(.*)$/.exec(line);
    if (!m) throw invalidArg('--table', `"${line}" is not "<start> <length> <type> <params>"`);
    return { start: Number(m[1]), length: Number(m[2]), type: m[3]!, params: m[4]! };
  });
}

export function formatTableText(table: Target[]): string {
  return table.map((t) => `${t.start} ${t.length} ${t.type}${t.params ? ` ${t.params.trimEnd()}` : ''}`).join('\n');
}
