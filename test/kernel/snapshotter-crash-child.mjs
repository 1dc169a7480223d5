// Child process of snapshotter-crash.test.ts: open the snapshotter (which
// recovers from the previous child's death), check records against the
// pool's own list of thin ids, report, then prepare, commit, view and remove
// at random until killed. Markers on stdout tell the parent whether a kill
// landed inside an operation.
import { createRequire } from 'node:module';
import { poolThinIds, report, say, seeded } from './crash-kit.mjs';

const { Snapshotter, dm } = createRequire(import.meta.url)('../../dist/index.js');
const [root, seed] = process.argv.slice(2);
const random = seeded(seed);
const pick = (list) => list[Math.floor(random() * list.length)];

say({ phase: 'opening' });
const s = await Snapshotter.open({ root, baseSize: '32M' });
// The pool's metadata device, as its table names it (MAJ:MIN of a loop device).
const [meta] = (await dm.table(s.pool.name))[0].params.split(' ');
report(
  await poolThinIds(s.pool, /^7:\d+$/.test(meta) ? `/dev/loop${meta.split(':')[1]}` : meta),
  s.records().map((r) => r.deviceId),
);

const infos = async (filter) => {
  const out = [];
  await s.walk((i) => void out.push(i), ...(filter ? [filter] : []));
  return out;
};
for (let n = 0; ; n++) {
  const committed = await infos('kind==committed');
  const active = await infos('kind==active');
  const all = await infos();
  const r = random();
  say({ op: 'begin' });
  const key = `k${process.pid}-${n}`;
  if (all.length < 4 || r < 0.4) {
    const parent = committed.length > 0 && random() < 0.8 ? pick(committed).name : undefined;
    if (random() < 0.2) await s.view(key, parent);
    else await s.prepare(key, parent);
  } else if (r < 0.7 && active.length > 0) {
    await s.commit(`c${process.pid}-${n}`, pick(active).name);
  } else {
    const leaves = all.filter((i) => !all.some((c) => c.parent === i.name));
    if (leaves.length > 0) await s.remove(pick(leaves).name);
  }
  say({ op: 'end' });
}
