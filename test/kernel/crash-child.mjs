// Child process of device-set-crash.test.ts: open the set (which recovers
// from the previous child's death), check records against the pool's own
// list of thin ids, report, then change the set at random until killed.
// Markers on stdout (a pipe: synchronous writes) tell the parent whether a
// kill landed inside an operation.
import { createRequire } from 'node:module';
import { poolThinIds, report, say, seeded } from './crash-kit.mjs';

const { DeviceSet } = createRequire(import.meta.url)('../../dist/index.js');
const [root, seed] = process.argv.slice(2);
const random = seeded(seed);

say({ phase: 'opening' });
const ds = await DeviceSet.open({ root });
const info = await ds.info();
report(
  await poolThinIds(ds.pool, info.metadataFile),
  ds.records().map((r) => r.deviceId),
);

for (let n = 0; ; n++) {
  const ids = ds.list();
  const r = random();
  say({ op: 'begin' });
  if (ids.length < 4 || r < 0.55) {
    const parent = ids.length > 0 && random() < 0.7 ? ids[Math.floor(random() * ids.length)] : undefined;
    const grow = random() < 0.15;
    await ds.create(`d${process.pid}-${n}`, { ...(parent ? { parent } : {}), ...(grow ? { size: '48M' } : {}) }).catch((e) => {
      if (!(e.code === 'ERR_DM_INVALID_ARG' && /smaller/.test(e.message))) throw e;
    });
  } else {
    await ds.remove(ids[Math.floor(random() * ids.length)]);
  }
  say({ op: 'end' });
}
