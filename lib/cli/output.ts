// How the CLI prints: JSON (stable keys, sizes in bytes) under --json,
// aligned columns and docker-style sizes otherwise.
import { Option, type Command } from 'commander';

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

/** `--json` on a verb, so its --help lists it (main.ts carries it to the program's option). */
export function withJson(cmd: Command): Command {
  return cmd.option('--json', 'print JSON: every key always present, sizes in bytes (shapes: docs/cli-json.md)');
}

/**
 * Another tool's spelling of one of `cmd`'s options (losetup's --sizelimit
 * for --size-limit): it sets the same value, and --help names what it stands for.
 */
export function alias(cmd: Command, flags: string, of: string, tool: string): Command {
  const o = new Option(flags, `${tool}'s spelling of ${of}`);
  const target = cmd.options.find((x) => x.long === of);
  if (!target) throw new Error(`alias ${flags}: ${cmd.name()} has no ${of}`);
  cmd.addOption(o);
  cmd.on(`option:${o.name()}`, (value: unknown) => cmd.setOptionValueWithSource(target.attributeName(), value, 'cli'));
  return cmd;
}
