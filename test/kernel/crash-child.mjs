// Child process of device-set-crash.test.ts: open the set (which recovers
// from the previous child's death), check records against the pool's own
// list of thin ids, report, then change the set at random until killed.
// Markers on stdout (a pipe: synchronous writes) tell the parent whether a
// kill landed inside an operation.
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';

const { DeviceSet } = createRequire(import.meta.url)('../../dist/index.js');
const [root, seedText] = process.argv.slice(2);
let seed = Number(seedText) >>> 0 || 1;
const random = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
const say = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

function thinIds(metadataDevice) {
  return new Promise((resolve, reject) =>
    execFile('thin_dump', ['--metadata-snap', metadataDevice], { maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
      err ? reject(new Error(stderr || err.message)) : resolve([...stdout.matchAll(/<device dev_id="(\d+)"/g)].map((m) => Number(m[1]))),
    ),
  );
}

say({ phase: 'opening' });
const ds = await DeviceSet.open({ root });
const info = await ds.info();
await ds.pool.releaseMetadataSnap().catch(() => undefined); // one a killed sibling still held
await ds.pool.reserveMetadataSnap();
let pool;
try {
  pool = await thinIds(info.metadataFile);
} finally {
  await ds.pool.releaseMetadataSnap();
}
const records = ds.records().map((r) => r.deviceId);
const inPoolOnly = pool.filter((id) => !records.includes(id));
const inRecordsOnly = records.filter((id) => !pool.includes(id));
const dupes = records.filter((id, i) => records.indexOf(id) !== i);
say({ phase: 'ready', pool: pool.length, records: records.length, inPoolOnly, inRecordsOnly, dupes });

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
