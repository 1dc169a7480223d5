// Every target grammar, and dispatch by type.
import type { Target } from '../dm';
import { delay } from './delay';
import { flakey } from './flakey';
import { parseError, type TargetGrammar } from './grammar';
import { error, linear, zero } from './linear';
import { snapshot, snapshotOrigin } from './snapshot';
import { thin } from './thin';
import { thinPool } from './thin-pool';

export { target, type TargetGrammar } from './grammar';
export { thinPool, formatThinPoolStatus, type ThinPoolParams, type ThinPoolStatus, type ThinPoolHealthyStatus, type ThinPoolMode, type ThinPoolFeature } from './thin-pool';
export { thin, formatThinStatus, type ThinParams, type ThinStatus } from './thin';
export { linear, zero, error, type LinearParams } from './linear';
export { snapshot, snapshotOrigin, formatSnapshotStatus, type SnapshotFeature, type SnapshotParams, type SnapshotStatus, type SnapshotPersistence, type SnapshotOriginParams } from './snapshot';
export { flakey, flakeyFeatures, type FlakeyParams } from './flakey';
export { delay, formatDelayStatus, type DelayParams, type DelayClass, type DelayStatus } from './delay';

/** Grammars by target type. */
export const grammars: Readonly<Record<string, TargetGrammar<unknown, unknown>>> = Object.freeze({
  'thin-pool': thinPool,
  thin,
  linear,
  zero,
  error,
  snapshot,
  'snapshot-origin': snapshotOrigin,
  flakey,
  delay,
} as Record<string, TargetGrammar<unknown, unknown>>);

/** A table entry's params, parsed by its target's grammar (ERR_DM_PARSE for an unknown type). */
export function parseTarget(t: Target): { type: string; params: unknown } {
  const g = grammars[t.type];
  if (!g) throw parseError(t.type, 'table', t.params, `no grammar for target type '${t.type}'`);
  return { type: t.type, params: g.parse(t.params) };
}
