// What bench/run.mjs and bench/host.mjs share: contenders timed in turns,
// and the figures drawn from the rounds.

/** The middle of `xs` (the mean of the two middle ones for an even count). */
export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

export const best = (xs) => Math.min(...xs);

/** Microseconds, or milliseconds from 1,000 µs up. */
export const f = (us) => (us >= 1000 ? `${(us / 1000).toFixed(2)} ms` : `${us.toFixed(us >= 100 ? 0 : 1)} µs`);

/** Microseconds per cycle since `t0` (process.hrtime.bigint()). */
export const usSince = (t0, n) => Number(process.hrtime.bigint() - t0) / 1e3 / n;

/**
 * Time `contenders` (name → async function resolving with µs per cycle) in
 * `rounds` rounds, each running every contender once, the order reversed
 * every other round, so that the machine's other load hits all of them alike.
 * Resolves with name → the per-round figures.
 */
export async function race(contenders, rounds) {
  const names = Object.keys(contenders);
  const times = Object.fromEntries(names.map((k) => [k, []]));
  for (let r = 0; r < rounds; r++) for (const k of r % 2 ? [...names].reverse() : names) times[k].push(await contenders[k]());
  return times;
}

/** Targets this process has printed as NOT met. */
let missed = 0;

/** 'met' or 'NOT met', counting the misses for missedTargets(). */
export function verdict(met) {
  if (!met) missed++;
  return met ? 'met' : 'NOT met';
}

/** `a ÷ b` to two places, with the target (≤ or ≥) and whether it is met. */
export function ratio(a, b, target) {
  if (!b) return '—';
  const x = a / b;
  if (!target) return x.toFixed(2);
  const [op, v] = target;
  return `${x.toFixed(x >= 10 ? 1 : 2)} (target ${op} ${v}: ${verdict(op === '≤' ? x <= v : x >= v)})`;
}

/** A closing line when a target was missed: where its measured cause and what would move it are written. */
export function missedTargets() {
  if (missed > 0)
    console.log(
      `\n${missed} target(s) above NOT met: bench/README.md ("What is not met") gives each one's measured cause and what would move it`,
    );
}
