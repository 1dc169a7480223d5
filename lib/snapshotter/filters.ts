// containerd's filter syntax for Walk, over snapshot info: each filter is
// comma-separated terms that must all hold; a snapshot passes when any filter
// does (no filter: every snapshot). A term is FIELD OP VALUE with OP one of
// ==, != and ~= (a regular expression); fields are name, parent, kind and
// labels."KEY" (or labels.KEY); values may be quoted "…" or /…/ for ~=.
import { invalidArg } from '../errors';
import type { SnapshotInfo } from './types';

interface Term {
  field: string[];
  op: '==' | '!=' | '~=' | 'present';
  value: string;
}

const FIELD = /^\s*([A-Za-z_]+)((?:\.(?:"(?:[^"\\]|\\.)*"|[A-Za-z0-9_.\-/]+))*)\s*(==|!=|~=)?\s*/;

function unquote(s: string): string {
  if (s.startsWith('"') && s.endsWith('"') && s.length >= 2) return JSON.parse(s) as string;
  if (s.startsWith('/') && s.endsWith('/') && s.length >= 2) return s.slice(1, -1);
  return s;
}

/** Split on commas outside quotes and slashes. */
function terms(text: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote) {
      cur += c;
      if (c === '\\' && quote === '"') cur += text[++i] ?? '';
      else if (c === quote) quote = undefined;
    } else if (c === '"' || (c === '/' && /(==|!=|~=)\s*$/.test(cur))) {
      quote = c;
      cur += c;
    } else if (c === ',') {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out.map((t) => t.trim()).filter((t) => t.length > 0);
}

function parseTerm(text: string, filter: string): Term {
  const m = FIELD.exec(text);
  if (!m) throw invalidArg('filters', `cannot parse '${text}' in filter ${JSON.stringify(filter)}`);
  const path = m[2] ? [...m[2].matchAll(/\.("(?:[^"\\]|\\.)*"|[A-Za-z0-9_.\-/]+?)(?=\.|$)/g)].map((p) => unquote(p[1]!)) : [];
  const field = [m[1]!, ...path];
  const op = (m[3] as Term['op'] | undefined) ?? 'present';
  const value = unquote(text.slice(m[0].length).trim());
  if (op !== 'present' && text.slice(m[0].length).trim() === '') throw invalidArg('filters', `'${text}' has no value after ${op}`);
  if (!['name', 'parent', 'kind', 'labels'].includes(field[0]!)) {
    throw invalidArg('filters', `unknown field '${field[0]}' in ${JSON.stringify(filter)} (name, parent, kind, labels."KEY")`);
  }
  if (op === '~=') {
    try {
      new RegExp(value);
    } catch {
      throw invalidArg('filters', `'${value}' is not a regular expression`);
    }
  }
  return { field, op, value };
}

function fieldOf(info: SnapshotInfo, field: string[]): string | undefined {
  switch (field[0]) {
    case 'name':
      return info.name;
    case 'parent':
      return info.parent;
    case 'kind':
      return info.kind;
    case 'labels':
      return field.length === 2 ? info.labels[field[1]!] : undefined;
    default:
      return undefined;
  }
}

function holds(info: SnapshotInfo, t: Term): boolean {
  const v = fieldOf(info, t.field);
  if (t.op === 'present') return v !== undefined;
  if (t.op === '==') return v === t.value;
  if (t.op === '!=') return v !== t.value;
  return v !== undefined && new RegExp(t.value).test(v);
}

/** A predicate for `filters` (checked here: a bad filter is ERR_DM_INVALID_ARG before any snapshot is read). */
export function snapshotFilter(filters: string[]): (info: SnapshotInfo) => boolean {
  const parsed = filters.map((f) => {
    if (typeof f !== 'string') throw invalidArg('filters', 'expected strings');
    return terms(f).map((t) => parseTerm(t, f));
  });
  if (parsed.length === 0) return () => true;
  return (info) => parsed.some((all) => all.every((t) => holds(info, t)));
}
