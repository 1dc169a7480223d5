// What the crash tests' children share: a seeded random source (each life
// replays its own sequence), markers on stdout (a pipe: synchronous writes)
// that tell the parent where a kill landed, and the pool's thin ids as
// thin_dump reads them from a held metadata snapshot.
import { execFile } from 'node:child_process';

/** A random number source in [0, 1) from `seed` (a linear congruential generator). */
export function seeded(seed) {
  let s = Number(seed) >>> 0 || 1;
  return () => (s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32;
}

/** One marker line for the parent. */
export const say = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

/** The thin ids of a live pool, read from a metadata snapshot held for the read. */
export async function poolThinIds(pool, metadataDevice) {
  await pool.releaseMetadataSnap().catch(() => undefined); // one a killed sibling still held
  await pool.reserveMetadataSnap();
  try {
    return await new Promise((resolve, reject) =>
      execFile('thin_dump', ['--metadata-snap', metadataDevice], { maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
        err ? reject(new Error(stderr || err.message)) : resolve([...stdout.matchAll(/<device dev_id="(\d+)"/g)].map((m) => Number(m[1]))),
      ),
    );
  } finally {
    await pool.releaseMetadataSnap();
  }
}

/** Say whether `records` (thin ids) and the pool's agree. */
export function report(pool, records) {
  const inPoolOnly = pool.filter((id) => !records.includes(id));
  const inRecordsOnly = records.filter((id) => !pool.includes(id));
  const dupes = records.filter((id, i) => records.indexOf(id) !== i);
  say({ phase: 'ready', pool: pool.length, records: records.length, inPoolOnly, inRecordsOnly, dupes });
}
