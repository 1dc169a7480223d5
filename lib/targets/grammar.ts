// Shared machinery for the per-target grammars: tokenising a table or status
// line, reading typed fields with ERR_DM_PARSE errors that quote the line,
// and the feature-argument lists most targets end with.
import { DmError } from '../errors';
import type { Target } from '../dm';

/** One target type's grammar: typed params ⇄ table line, status line → typed status. */
export interface TargetGrammar<Params, Status> {
  readonly type: string;
  /** Typed parameters to the table line's parameter text. */
  format(params: Params): string;
  /** A table line's parameter text (as given, or as the kernel prints it) to typed parameters. */
  parse(text: string): Params;
  /** A status line's text to typed status. */
  parseStatus(text: string): Status;
}

/** A table entry for `grammar` with typed params. */
export function target<P>(grammar: TargetGrammar<P, unknown>, start: number, length: number, params: P): Target {
  return { start, length, type: grammar.type, params: grammar.format(params) };
}

export function parseError(type: string, what: string, text: string, problem: string): DmError {
  return new DmError(`cannot parse ${type} ${what} ${JSON.stringify(text)}: ${problem}`, { code: 'ERR_DM_PARSE' });
}

/** Reads whitespace-separated tokens of one line, failing with ERR_DM_PARSE. */
export class Tokens {
  private readonly words: string[];
  private at = 0;

  constructor(
    private readonly type: string,
    private readonly what: 'table' | 'status',
    private readonly text: string,
  ) {
    if (typeof text !== 'string') throw parseError(type, what, String(text), 'expected a string');
    this.words = text.trim() === '' ? [] : text.trim().split(/\s+/);
  }

  fail(problem: string): DmError {
    return parseError(this.type, this.what, this.text, problem);
  }

  get done(): boolean {
    return this.at >= this.words.length;
  }

  get remaining(): number {
    return this.words.length - this.at;
  }

  peek(): string | undefined {
    return this.words[this.at];
  }

  word(field: string): string {
    const w = this.words[this.at];
    if (w === undefined) throw this.fail(`missing ${field}`);
    this.at++;
    return w;
  }

  /** A decimal unsigned integer that is a safe JavaScript number. */
  uint(field: string): number {
    const w = this.word(field);
    if (!/^\d+$/.test(w)) throw this.fail(`${field} '${w}' is not an unsigned integer`);
    const n = Number(w);
    if (!Number.isSafeInteger(n)) throw this.fail(`${field} ${w} is too large`);
    return n;
  }

  /** `used/total` as two unsigned integers. */
  ratio(field: string): [number, number] {
    const w = this.word(field);
    const m = /^(\d+)\/(\d+)$/.exec(w);
    if (!m) throw this.fail(`${field} '${w}' is not <used>/<total>`);
    const used = Number(m[1]);
    const total = Number(m[2]);
    if (!Number.isSafeInteger(used) || !Number.isSafeInteger(total)) throw this.fail(`${field} ${w} is too large`);
    return [used, total];
  }

  oneOf<T extends string>(field: string, choices: readonly T[]): T {
    const w = this.word(field);
    if (!(choices as readonly string[]).includes(w)) throw this.fail(`${field} '${w}' is not one of ${choices.join(', ')}`);
    return w as T;
  }

  /** `<count> <arg>...`: the feature-argument list most targets end with (absent = none). */
  counted(field: string): string[] {
    if (this.done) return [];
    const n = this.uint(`${field} count`);
    if (n > this.remaining) throw this.fail(`${field} count ${n} but only ${this.remaining} arguments follow`);
    const args: string[] = [];
    for (let i = 0; i < n; i++) args.push(this.word(field));
    return args;
  }

  /** A status that is only "Fail" or "Error" (a failed pool and its thin devices print that instead). */
  failed(): { state: 'fail' | 'error' } | undefined {
    const first = this.peek();
    if (first !== 'Fail' && first !== 'Error') return undefined;
    this.word('state');
    this.end();
    return { state: first === 'Fail' ? 'fail' : 'error' };
  }

  end(): void {
    if (!this.done) throw this.fail(`unexpected '${this.words.slice(this.at).join(' ')}' at the end`);
  }
}

/** `<count> <arg>...` for a feature list; empty list formats as nothing. */
export function formatCounted(args: readonly string[]): string {
  return args.length === 0 ? '' : `${args.length} ${args.join(' ')}`;
}

/** A table argument: one token, no white space or NUL (device paths, major:minor). */
export function checkWord(type: string, field: string, value: unknown): string {
  if (typeof value !== 'string' || !/^[^\s\0]+$/.test(value))
    throw new DmError(`invalid ${type} ${field}: ${JSON.stringify(value)} must be one word`, { code: 'ERR_DM_INVALID_ARG' });
  return value;
}

export function checkCount(type: string, field: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0)
    throw new DmError(`invalid ${type} ${field}: expected a safe non-negative integer, got ${String(value)}`, {
      code: 'ERR_DM_INVALID_ARG',
    });
  return value;
}

export function joinWords(...parts: Array<string | number>): string {
  return parts
    .map(String)
    .filter((p) => p !== '')
    .join(' ');
}
