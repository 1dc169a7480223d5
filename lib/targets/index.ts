// Every target grammar, and dispatch by type.
import type { Target } from '../dm';
import { delay, type DelayParams } from './delay';
import { flakey, type FlakeyParams } from './flakey';
import { parseError, type TargetGrammar } from './grammar';
import { error, linear, zero, type LinearParams } from './linear';
import { snapshot, snapshotOrigin, type SnapshotOriginParams, type SnapshotParams } from './snapshot';
import { thin, type ThinParams } from './thin';
import { thinPool, type ThinPoolParams } from './thin-pool';

export { target, type TargetGrammar } from './grammar';
export {
  thinPool,
  formatThinPoolStatus,
  type ThinPoolParams,
  type ThinPoolStatus,
  type ThinPoolHealthyStatus,
  type ThinPoolMode,
  type ThinPoolFeature,
} from './thin-pool';
export { thin, formatThinStatus, type ThinParams, type ThinStatus } from './thin';
export { linear, zero, error, type LinearParams } from './linear';
export {
  snapshot,
  snapshotOrigin,
  formatSnapshotStatus,
  type SnapshotFeature,
  type SnapshotParams,
  type SnapshotStatus,
  type SnapshotPersistence,
  type SnapshotOriginParams,
} from './snapshot';
export { flakey, flakeyFeatures, type FlakeyParams } from './flakey';
export { delay, formatDelayStatus, type DelayParams, type DelayClass, type DelayStatus } from './delay';

/** A table entry with its params parsed; `type` tells which params. */
export type ParsedTarget = { start: number; length: number } & (
  | { type: 'thin-pool'; params: ThinPoolParams }
  | { type: 'thin'; params: ThinParams }
  | { type: 'linear'; params: LinearParams }
  | { type: 'zero'; params: Record<string, never> }
  | { type: 'error'; params: Record<string, never> }
  | { type: 'snapshot'; params: SnapshotParams }
  | { type: 'snapshot-origin'; params: SnapshotOriginParams }
  | { type: 'flakey'; params: FlakeyParams }
  | { type: 'delay'; params: DelayParams }
);

/** Target types this library has a grammar for. */
export type KnownTargetType = ParsedTarget['type'];

// Typed against ParsedTarget, so the two cannot drift apart.
const byType: { [K in KnownTargetType]: TargetGrammar<Extract<ParsedTarget, { type: K }>['params'], unknown> } = {
  'thin-pool': thinPool,
  thin,
  linear,
  zero,
  error,
  snapshot,
  'snapshot-origin': snapshotOrigin,
  flakey,
  delay,
};

/**
 * Grammars by target type. No prototype, so a type such as 'constructor'
 * finds nothing rather than an Object method.
 */
export const grammars: Readonly<Record<string, TargetGrammar<unknown, unknown>>> = Object.freeze(
  Object.assign(Object.create(null) as Record<string, TargetGrammar<unknown, unknown>>, byType),
);

/** A table entry (as dm.table returns it) with its params parsed by its type's grammar; ERR_DM_PARSE for a type without one. */
export function parseTable(t: Target): ParsedTarget {
  const g = grammars[t.type];
  if (!g) throw parseError(t.type, 'table', t.params, `no grammar for target type '${t.type}'`);
  return { start: t.start, length: t.length, type: t.type, params: g.parse(t.params) } as ParsedTarget;
}

/** @deprecated The same as parseTable. */
export const parseTarget = parseTable;
