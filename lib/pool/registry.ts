// The process-wide state of thin pools, the only module-level mutable state
// above the raw layer: per pool name, the devices as last seen (the guess
// one-trip snapshots check), and the serialisation of changes. Keyed by name,
// so every ThinPool object of one pool shares them.
import type { DmName } from '../validate';

/** A device on a pool, as last seen: its name and the thin id it maps (-1: not a thin device of this pool). */
export interface SeenDevice {
  name: DmName;
  thinId: number;
}

const seen = new Map<string, Map<number, SeenDevice>>();
const locks = new Map<string, Promise<unknown>>();

/** The devices on pool `pool` as last seen, by minor. */
export function devicesSeen(pool: string): Map<number, SeenDevice> {
  let m = seen.get(pool);
  if (!m) seen.set(pool, (m = new Map()));
  return m;
}

/** Run `body` after every change to pool `pool` queued before it (in this process). */
export function serialised<T>(pool: string, body: () => Promise<T>): Promise<T> {
  const prior = locks.get(pool) ?? Promise.resolve();
  const run = prior.then(body, body);
  const tail = run.catch(() => undefined);
  locks.set(pool, tail);
  void tail.then(() => {
    if (locks.get(pool) === tail) locks.delete(pool);
  });
  return run;
}
