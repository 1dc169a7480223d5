#!/usr/bin/env node
// npm run bench: the library against the physical limit (bench/c-reference.c,
// the same syscalls from C) and against the dmsetup / losetup CLIs, on one
// kernel in one run. Prints microseconds per cycle and the ratios the
// project's targets speak of. First, when this host's own kernel has loop
// devices, the loop workload there (bench/host.mjs: no VM in between); then
// the rest, inside the UML VM when this host has no device-mapper.
// Contenders are timed in turns, round by round (bench/stats.mjs), and each
// row gives the best round and the median.
//
//   BENCH_N=1000 (library and C cycles)   BENCH_CLI_N=50 (CLI cycles)
//   BENCH_ROUNDS=5 (rounds the cycles are split into)
//   BENCH_SCALE=10000 (workload 4)         BENCH_RSS_N=20000 (memory)
//   BENCH_RACE=0: without the snapshotter race (bench/race.mjs)
//   npm run bench -- --qemu: in Debian's own kernel under QEMU rather than
//   UML, when the host has no device-mapper (see bench/README.md)
//   npm run bench -- --host: the host-kernel part alone
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hostLoop } from '../scripts/host-kernel.mjs';
import { hereOrInVm, root, setUp } from '../scripts/setup.mjs';
import { best, f, median, missedTargets, race, ratio, usSince } from './stats.mjs';

if (process.env.DEVMAPPER_IN_VM !== '1') {
  setUp();
  const host = hostLoop();
  console.log(host.ok ? `${host.why}: the loop workload runs there first (bench/host.mjs)` : `${host.why}: no host-kernel rows`);
  if (host.ok) {
    const r = spawnSync(process.execPath, [join(root, 'bench', 'host.mjs')], { stdio: 'inherit' });
    if (r.status !== 0) process.exit(r.status ?? 1);
  }
  if (process.argv.includes('--host')) process.exit(0);
}
hereOrInVm(fileURLToPath(import.meta.url), { setUp: false });

const N = Number(process.env.BENCH_N ?? 1000);
const CLI_N = Number(process.env.BENCH_CLI_N ?? 50);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const PER = Math.max(1, Math.round(N / ROUNDS)); // cycles a round
const CLI_PER = Math.max(1, Math.round(CLI_N / ROUNDS));
const SCALE = Number(process.env.BENCH_SCALE ?? 10000); // workload 4: thin devices, a fifth of them active
const require = createRequire(import.meta.url);
const { ThinPool, DeviceSet, dm, loop } = require(join(root, 'dist/index.js'));
const { native } = require(join(root, 'dist/binding.js'));

// Trips to the addon's threads: calls of its asynchronous functions (the
// library reads them off `native` at call time), counted while `trips.on`.
const trips = { n: 0, on: false };
for (const [k, fn] of Object.entries(native)) {
  if (typeof fn !== 'function' || k.endsWith('Sync') || k === 'FdWatcher') continue;
  native[k] = (...a) => {
    const r = fn(...a);
    if (trips.on && typeof r?.then === 'function') trips.n++;
    return r;
  };
}
/** The trips `call` makes. */
async function countTrips(call) {
  trips.n = 0;
  trips.on = true;
  try {
    await call();
  } finally {
    trips.on = false;
  }
  return trips.n;
}

// The C reference and the libdevmapper peer, compiled here so they match this machine's headers.
const cref = join(root, '.vm', 'c-reference');
const libdm = join(root, '.vm', 'libdm-reference');
mkdirSync(join(root, '.vm'), { recursive: true });
execFileSync('gcc', ['-O2', '-o', cref, join(root, 'bench', 'c-reference.c')]);
execFileSync('gcc', ['-O2', '-o', libdm, join(root, 'bench', 'libdm-reference.c'), '-ldevmapper']);

const usPerCycle = usSince;
const sh = (cmd, args) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });

const dir = '/tmp/devmapper-bench';
await rm(dir, { recursive: true, force: true });
const pool = await ThinPool.createLoopBacked({ dir, name: 'bench-pool', dataSize: '8G', metadataSize: '256M' });
const rows = [];
let scale = {};
let containers = {};
let openUs = 0;
let concurrency = {};

/** A contender for race(): N cycles of BODY, in µs per cycle. */
const timed = (n, body) => async () => {
  const t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await body(i);
  return usPerCycle(t, n);
};

try {
  // 1. Thin lifecycle: create_thin + create + load + resume, then remove + delete.
  {
    const t1 = await race(
      {
        oneTrip: timed(PER, async (i) => {
          const d = await pool.createThinDevice({ thinId: i, name: `bench-${i}`, size: 1 << 20 });
          await pool.removeThinDevice(d.name, d.thinId);
        }),
        calls: timed(PER, async (i) => {
          await pool.createThin(i);
          await pool.activate(i, { name: `bench-${i}`, size: 1 << 20 });
          await pool.deactivate(`bench-${i}`);
          await pool.deleteThin(i);
        }),
        raw: timed(PER, async (i) => {
          await dm.message(pool.name, `create_thin ${i}`);
          await dm.create(`bench-${i}`, { table: [{ start: 0, length: 2048, type: 'thin', params: `${pool.path} ${i}` }] });
          await dm.remove(`bench-${i}`);
          await dm.message(pool.name, `delete ${i}`);
        }),
        c: async () => Number(sh(cref, ['thin', pool.name, String(PER)]).toString()),
        libdm: async () => Number(sh(libdm, ['thin', pool.name, String(PER)]).toString()),
        cli: timed(CLI_PER, async (i) => {
          sh('dmsetup', ['message', pool.name, '0', `create_thin ${i}`]);
          sh('dmsetup', ['create', '--noudevsync', `bench-${i}`, '--table', `0 2048 thin ${pool.path} ${i}`]);
          sh('dmsetup', ['remove', '--noudevsync', `bench-${i}`]);
          sh('dmsetup', ['message', pool.name, '0', `delete ${i}`]);
        }),
      },
      ROUNDS,
    );
    const common = { c: t1.c, libdm: t1.libdm, cli: t1.cli };
    rows.push({ workload: '1 thin lifecycle (createThinDevice + removeThinDevice)', lib: t1.oneTrip, ...common, target: ['≤', 1.6] });
    rows.push({ workload: '1 thin lifecycle (createThin, activate, deactivate, deleteThin)', lib: t1.calls, ...common });
    rows.push({ workload: '1 thin lifecycle (raw dm API)', lib: t1.raw, ...common });
    const lib = median(t1.calls);

    // The same workload from 8 concurrent callers on the one pool.
    const perCaller = Math.ceil(N / 8);
    const t = process.hrtime.bigint();
    await Promise.all(
      Array.from({ length: 8 }, async (_, k) => {
        for (let j = 0; j < perCaller; j++) {
          const id = k * perCaller + j;
          await pool.createThin(id);
          await pool.activate(id, { name: `bench-c${id}`, size: 1 << 20 });
          await pool.deactivate(`bench-c${id}`);
          await pool.deleteThin(id);
        }
      }),
    );
    concurrency = { callers: 8, cycles: 8 * perCaller, us: usPerCycle(t, 8 * perCaller), single: lib };
  }

  // 2. Snapshot lifecycle of an active origin.
  {
    await pool.createThin(900001);
    await pool.activate(900001, { name: 'bench-origin', size: 1 << 20 });
    const t2 = await race(
      {
        oneTrip: timed(PER, async (i) => {
          const d = await pool.createSnapshotDevice(900001, { thinId: i, name: `bench-s${i}`, size: 1 << 20 });
          await pool.removeThinDevice(d.name, d.thinId);
        }),
        calls: timed(PER, async (i) => {
          await pool.createSnapshot(i, 900001);
          await pool.activate(i, { name: `bench-s${i}`, size: 1 << 20 });
          await pool.deactivate(`bench-s${i}`);
          await pool.deleteThin(i);
        }),
        c: async () => Number(sh(cref, ['snap', pool.name, String(PER)]).toString()),
        libdm: async () => Number(sh(libdm, ['snap', pool.name, String(PER)]).toString()),
        cli: timed(CLI_PER, async (i) => {
          sh('dmsetup', ['suspend', 'bench-origin']);
          sh('dmsetup', ['message', pool.name, '0', `create_snap ${i} 900001`]);
          sh('dmsetup', ['resume', '--noudevsync', 'bench-origin']);
          sh('dmsetup', ['create', '--noudevsync', `bench-s${i}`, '--table', `0 2048 thin ${pool.path} ${i}`]);
          sh('dmsetup', ['remove', '--noudevsync', `bench-s${i}`]);
          sh('dmsetup', ['message', pool.name, '0', `delete ${i}`]);
        }),
      },
      ROUNDS,
    );
    const common = { c: t2.c, libdm: t2.libdm, cli: t2.cli };
    rows.push({
      workload: '2 snapshot lifecycle (createSnapshotDevice + removeThinDevice)',
      lib: t2.oneTrip,
      ...common,
      target: ['≤', 1.8],
    });
    rows.push({ workload: '2 snapshot lifecycle (createSnapshot, activate, deactivate, deleteThin)', lib: t2.calls, ...common });
    await pool.deactivate('bench-origin');
    await pool.deleteThin(900001);
  }

  // The fixed cost of a call: an empty trip through the addon, and the cheapest ioctl.
  {
    for (let i = 0; i < 100; i++) await native.nop();
    const fixed = await race(
      {
        nop: async () => {
          const t = process.hrtime.bigint();
          for (let i = 0; i < PER; i++) await native.nop();
          return usPerCycle(t, PER);
        },
        version: async () => {
          const t = process.hrtime.bigint();
          for (let i = 0; i < PER; i++) await dm.version();
          return usPerCycle(t, PER);
        },
        c: async () => Number(sh(cref, ['version', String(PER)]).toString()),
      },
      ROUNDS,
    );
    rows.push({ workload: 'empty trip: native.nop()', lib: fixed.nop });
    rows.push({ workload: 'dm.version() (DM_VERSION)', lib: fixed.version, c: fixed.c });
  }

  // 5. Loop attach + detach of a sparse file.
  {
    const file = join(dir, 'loopfile');
    sh('truncate', ['-s', '64M', file]);
    const t5 = await race(
      {
        lib: async () => {
          const t = process.hrtime.bigint();
          for (let i = 0; i < PER; i++) await loop.detach((await loop.attach(file)).number);
          return usPerCycle(t, PER);
        },
        c: async () => Number(sh(cref, ['loop', file, String(PER)]).toString()),
        cli: async () => {
          const t = process.hrtime.bigint();
          for (let i = 0; i < CLI_PER; i++) sh('losetup', ['-d', sh('losetup', ['-f', '--show', file]).toString().trim()]);
          return usPerCycle(t, CLI_PER);
        },
      },
      ROUNDS,
    );
    rows.push({ workload: '5 loop attach + detach', ...t5 });
  }
  // 4. Listing and status at scale: SCALE thin devices, SCALE/5 active.
  {
    for (let i = 0; i < SCALE; i++) await dm.message(pool.name, `create_thin ${i}`);
    for (let i = 0; i < SCALE / 5; i++)
      await dm.create(`bench-a${i}`, { table: [{ start: 0, length: 2048, type: 'thin', params: `${pool.path} ${i}` }] });
    const fd = (await import('node:fs')).openSync('/dev/mapper/control', 'r+');
    const first = await native.dmIoctl(fd, 'DM_LIST_DEVICES', { flags: native.dmFlags.DM_UUID_FLAG }); // the bare addon: 16 KiB start
    (await import('node:fs')).closeSync(fd);
    let t = process.hrtime.bigint();
    const listed = await dm.list();
    const listUs = usPerCycle(t, 1);
    t = process.hrtime.bigint();
    await pool.status();
    const statusUs = usPerCycle(t, 1);
    scale = { devices: listed.length, growths: first.growths, listUs, statusUs };
    for (let i = 0; i < SCALE / 5; i++) await dm.remove(`bench-a${i}`);
    for (let i = 0; i < SCALE; i++) await dm.message(pool.name, `delete ${i}`);
  }
} finally {
  await pool.destroy();
  await rm(dir, { recursive: true, force: true });
}

// 3. Container lifecycle through a DeviceSet (the seed blog's 1000 containers), and
// 4b. DeviceSet.open of a set holding SCALE records.
{
  const setRoot = '/tmp/devmapper-bench-set';
  await rm(setRoot, { recursive: true, force: true });
  const ds = await DeviceSet.open({ root: setRoot, baseSize: '64M', dataSize: '8G', metadataSize: '256M' });
  await ds.create('image');
  // One container's trips, step by step (the records' file writes are not trips to the addon).
  const counted = {
    create: await countTrips(() => ds.create('counted', { parent: 'image' })),
    mount: await countTrips(() => ds.mount('counted', `${setRoot}/mnt/ctr`)),
    unmount: await countTrips(() => ds.unmount('counted')),
    remove: await countTrips(() => ds.remove('counted')),
  };
  let createUs = 0;
  let destroyUs = 0;
  for (let i = 0; i < N; i++) {
    let t = process.hrtime.bigint();
    await ds.create(`ctr${i}`, { parent: 'image' });
    await ds.mount(`ctr${i}`, `${setRoot}/mnt/ctr`);
    createUs += usPerCycle(t, 1);
    t = process.hrtime.bigint();
    await ds.unmount(`ctr${i}`);
    await ds.remove(`ctr${i}`);
    destroyUs += usPerCycle(t, 1);
  }
  containers = { create: createUs / N, destroy: destroyUs / N, trips: counted };
  await ds.close({ keep: true });
  // SCALE more records, appended to the set's log as the set writes them (one
  // JSON line per change); open reads every one. Their thin ids are not in the
  // pool: open does not look them up.
  const { appendFile, readFile, writeFile } = await import('node:fs/promises');
  const { putLine } = require(join(root, 'dist/metadata-store.js'));
  const log = `${setRoot}/metadata/devices.log`;
  const small = await readFile(log, 'utf8');
  await appendFile(
    log,
    Array.from({ length: SCALE }, (_, i) =>
      putLine({ id: `r${i}`, deviceId: 100000 + i, size: 64 << 20, parent: 'image', transactionId: 1 }),
    ).join(''),
  );
  const t = process.hrtime.bigint();
  const big = await DeviceSet.open({ root: setRoot });
  openUs = usPerCycle(t, 1);
  const records = big.list().length;
  await big.close({ keep: true });
  await writeFile(log, small);
  await (await DeviceSet.open({ root: setRoot }).catch(() => undefined))?.close();
  await (await import('node:fs/promises')).rm(setRoot, { recursive: true, force: true });
  scale.openRecords = records;
}

// Memory: workload 1 in a fresh process, RSS after 1,000 cycles and after
// RSS_N (20,000), with V8's nursery fixed so its growth is not counted.
const RSS_N = Number(process.env.BENCH_RSS_N ?? 20000);
const memory = JSON.parse(
  execFileSync(
    process.execPath,
    [
      '--expose-gc',
      '--min-semi-space-size=16',
      '--max-semi-space-size=16',
      join(root, 'test/kernel/soak-child.mjs'),
      '/tmp/devmapper-bench-rss',
      'bench-rss-pool',
      'bench-rss-thin',
      String(RSS_N),
    ],
    { maxBuffer: 1 << 20 },
  ).toString(),
);
await rm('/tmp/devmapper-bench-rss', { recursive: true, force: true });

const v = await dm.version();
console.log(
  `\ndevmapper benchmark: n=${N} in ${ROUNDS} rounds, interleaved (CLI n=${CLI_N}), kernel ${execFileSync('uname', ['-r']).toString().trim()}, device-mapper ${v.major}.${v.minor}.${v.patch}, node ${process.version}\n`,
);
console.log(
  '| workload | library best / median | C best / median | libdevmapper median | dmsetup/losetup median | library ÷ C, best of rounds | library ÷ C, median | CLI ÷ library, median (target ≥ 100) |',
);
console.log('|---|---|---|---|---|---|---|---|');
for (const r of rows)
  console.log(
    `| ${r.workload} | ${f(best(r.lib))} / ${f(median(r.lib))} | ${r.c ? `${f(best(r.c))} / ${f(median(r.c))}` : '—'} | ${r.libdm ? f(median(r.libdm)) : '—'} | ${r.cli ? f(median(r.cli)) : '—'} | ` +
      `${r.c ? ratio(best(r.lib), best(r.c), r.target) : '—'} | ${r.c ? ratio(median(r.lib), median(r.c)) : '—'} | ${r.cli ? ratio(median(r.cli), median(r.lib), ['≥', 100]) : '—'} |`,
  );
console.log(
  `\nconcurrency: workload 1 from ${concurrency.callers} callers on one pool, ${concurrency.cycles} cycles: ${f(concurrency.us)} per cycle (1 caller: ${f(concurrency.single)}; ratio ${(concurrency.single / concurrency.us).toFixed(2)}x)`,
);
console.log(
  `memory: workload 1, RSS after ${memory.warmUp} cycles ${(memory.rss0 / 2 ** 20).toFixed(1)} MiB, after ${memory.cycles} ${(memory.rss1 / 2 ** 20).toFixed(1)} MiB (difference ${((memory.rss1 - memory.rss0) / 2 ** 20).toFixed(2)} MiB; target ≤ 5), JS heap in use ${(memory.heap0 / 2 ** 20).toFixed(2)} → ${(memory.heap1 / 2 ** 20).toFixed(2)} MiB, fds ${memory.fds0.length} → ${memory.fds1.length}`,
);
console.log(
  `\n3. container lifecycle (DeviceSet, n=${N}): create + mount ${f(containers.create)}, unmount + remove ${f(containers.destroy)} per container (Docker 1.9 on loop devices: ~550 ms and ~720 ms); ` +
    `trips to the kernel: create ${containers.trips.create} + mount ${containers.trips.mount}, unmount ${containers.trips.unmount} + remove ${containers.trips.remove}`,
);
console.log(
  `4. scale: dm.list() of ${scale.devices} devices ${f(scale.listUs)} (a fresh 16 KiB buffer grew ${scale.growths}x; target ≤ 3), pool.status() with ${SCALE} thin devices ${f(scale.statusUs)}, DeviceSet.open() of ${scale.openRecords} records ${f(openUs)} (target < 1 s)`,
);

missedTargets();

// The snapshotter race (bench/race.mjs) on the same kernel, after the figures above (BENCH_RACE=0: not).
if (process.env.BENCH_RACE !== '0') {
  const snapshotterRace = spawnSync(process.execPath, [join(root, 'bench', 'race.mjs')], {
    stdio: 'inherit',
    env: { ...process.env, DEVMAPPER_IN_VM: process.env.DEVMAPPER_IN_VM ?? '' },
  });
  process.exitCode = snapshotterRace.status ?? 1;
}
