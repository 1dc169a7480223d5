// dmsetup-style table text: "<start> <length> <type> <params...>" per line.
import type { Target } from '../dm';
import { invalidArg } from '../errors';

/**
 * Table text as targets. `--table` lines are separated by newlines or ";";
 * a table file's (as dmsetup reads one) only by newlines, and its "#" lines are comments.
 */
export function parseTableText(text: string, from: { file?: string } = {}): Target[] {
  const field = from.file ?? '--table';
  const lines = text
    .split(from.file === undefined ? /[\n;]/ : /\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !(from.file !== undefined && l.startsWith('#')));
  if (lines.length === 0) throw invalidArg(field, 'give at least one line "<start> <length> <type> <params>"');
  return lines.map((line) => {
    const m = /^(\d+)\s+(\d+)\s+(\S+)\s*(.*)$/.exec(line);
    if (!m) throw invalidArg(field, `"${line}" is not "<start> <length> <type> <params>"`);
    return { start: Number(m[1]), length: Number(m[2]), type: m[3]!, params: m[4]! };
  });
}

export function formatTableText(table: Target[]): string {
  return table.map((t) => `${t.start} ${t.length} ${t.type}${t.params ? ` ${t.params.trimEnd()}` : ''}`).join('\n');
}
