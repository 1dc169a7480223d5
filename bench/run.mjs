#!/usr/bin/env node
// npm run bench: the library against the physical limit (bench/c-reference.c,
// the same syscalls from C) and against the dmsetup / losetup CLIs, on one
// kernel in one run. Prints microseconds per cycle and the ratios the
// project's targets speak of. Runs inside the UML VM when this host has no
// device-mapper.
//
//   BENCH_N=1000 (library and C cycles)   BENCH_CLI_N=50 (CLI cycles)
//   BENCH_SCALE=10000 (workload 4)         BENCH_RSS_N=20000 (memory)
//   npm run bench -- --qemu: in Debian's own kernel under QEMU rather than
//   UML, when the host has no device-mapper (see bench/README.md)
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hereOrInVm, root } from '../scripts/setup.mjs';

hereOrInVm(fileURLToPath(import.meta.url));

const N = Number(process.env.BENCH_N ?? 1000);
const CLI_N = Number(process.env.BENCH_CLI_N ?? 50);
const SCALE = Number(process.env.BENCH_SCALE ?? 10000); // workload 4: thin devices, a fifth of them active
const require = createRequire(import.meta.url);
const { ThinPool, DeviceSet, dm, loop } = require(join(root, 'dist/index.js'));
const { native } = require(join(root, 'dist/binding.js'));

// The C reference and the libdevmapper peer, compiled here so they match this machine's headers.
const cref = join(root, '.vm', 'c-reference');
const libdm = join(root, '.vm', 'libdm-reference');
mkdirSync(join(root, '.vm'), { recursive: true });
execFileSync('gcc', ['-O2', '-o', cref, join(root, 'bench', 'c-reference.c')]);
execFileSync('gcc', ['-O2', '-o', libdm, join(root, 'bench', 'libdm-reference.c'), '-ldevmapper']);

const usPerCycle = (started, n) => Number(process.hrtime.bigint() - started) / 1e3 / n;
const sh = (cmd, args) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });

const dir = '/tmp/devmapper-bench';
await rm(dir, { recursive: true, force: true });
const pool = await ThinPool.createLoopBacked({ dir, name: 'bench-pool', dataSize: '8G', metadataSize: '256M' });
const rows = [];
let scale = {};
let containers = {};
let openUs = 0;
let concurrency = {};

try {
  // 1. Thin lifecycle: create_thin + create + load + resume, then remove + delete.
  {
    let t = process.hrtime.bigint();
    for (let i = 0; i < N; i++) {
      await pool.createThin(i);
      await pool.activate(i, { name: `bench-${i}`, size: 1 << 20 });
      await pool.deactivate(`bench-${i}`);
      await pool.deleteThin(i);
    }
    const lib = usPerCycle(t, N);
    t = process.hrtime.bigint();
    for (let i = 0; i < N; i++) {
      const d = await pool.createThinDevice({ thinId: i, name: `bench-${i}`, size: 1 << 20 });
      await pool.removeThinDevice(d.name, d.thinId);
    }
    const oneTrip = usPerCycle(t, N);
    t = process.hrtime.bigint();
    for (let i = 0; i < N; i++) {
      await dm.message(pool.name, `create_thin ${i}`);
      await dm.create(`bench-${i}`, { table: [{ start: 0, length: 2048, type: 'thin', params: `${pool.path} ${i}` }] });
      await dm.remove(`bench-${i}`);
      await dm.message(pool.name, `delete ${i}`);
    }
    const raw = usPerCycle(t, N);
    const c = Number(sh(cref, ['thin', pool.name, String(N)]).toString());
    const lib_dm = Number(sh(libdm, ['thin', pool.name, String(N)]).toString());
    t = process.hrtime.bigint();
    for (let i = 0; i < CLI_N; i++) {
      sh('dmsetup', ['message', pool.name, '0', `create_thin ${i}`]);
      sh('dmsetup', ['create', '--noudevsync', `bench-${i}`, '--table', `0 2048 thin ${pool.path} ${i}`]);
      sh('dmsetup', ['remove', '--noudevsync', `bench-${i}`]);
      sh('dmsetup', ['message', pool.name, '0', `delete ${i}`]);
    }
    const cli = usPerCycle(t, CLI_N);
    rows.push({ workload: '1 thin lifecycle (createThinDevice + removeThinDevice)', lib: oneTrip, c, libdm: lib_dm, cli });
    rows.push({ workload: '1 thin lifecycle (createThin, activate, deactivate, deleteThin)', lib, c, libdm: lib_dm, cli });
    rows.push({ workload: '1 thin lifecycle (raw dm API)', lib: raw, c, libdm: lib_dm, cli });

    // The same workload from 8 concurrent callers on the one pool.
    const perCaller = Math.ceil(N / 8);
    t = process.hrtime.bigint();
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
    let t = process.hrtime.bigint();
    for (let i = 0; i < N; i++) {
      await pool.createSnapshot(i, 900001);
      await pool.activate(i, { name: `bench-s${i}`, size: 1 << 20 });
      await pool.deactivate(`bench-s${i}`);
      await pool.deleteThin(i);
    }
    const lib = usPerCycle(t, N);
    t = process.hrtime.bigint();
    for (let i = 0; i < N; i++) {
      const d = await pool.createSnapshotDevice(900001, { thinId: i, name: `bench-s${i}`, size: 1 << 20 });
      await pool.removeThinDevice(d.name, d.thinId);
    }
    const oneTrip = usPerCycle(t, N);
    const c = Number(sh(cref, ['snap', pool.name, String(N)]).toString());
    const lib_dm = Number(sh(libdm, ['snap', pool.name, String(N)]).toString());
    t = process.hrtime.bigint();
    for (let i = 0; i < CLI_N; i++) {
      sh('dmsetup', ['suspend', 'bench-origin']);
      sh('dmsetup', ['message', pool.name, '0', `create_snap ${i} 900001`]);
      sh('dmsetup', ['resume', '--noudevsync', 'bench-origin']);
      sh('dmsetup', ['create', '--noudevsync', `bench-s${i}`, '--table', `0 2048 thin ${pool.path} ${i}`]);
      sh('dmsetup', ['remove', '--noudevsync', `bench-s${i}`]);
      sh('dmsetup', ['message', pool.name, '0', `delete ${i}`]);
    }
    const cli = usPerCycle(t, CLI_N);
    rows.push({ workload: '2 snapshot lifecycle (createSnapshotDevice + removeThinDevice)', lib: oneTrip, c, libdm: lib_dm, cli });
    rows.push({ workload: '2 snapshot lifecycle (createSnapshot, activate, deactivate, deleteThin)', lib, c, libdm: lib_dm, cli });
    await pool.deactivate('bench-origin');
    await pool.deleteThin(900001);
  }

  // 5. Loop attach + detach of a sparse file.
  {
    const file = join(dir, 'loopfile');
    sh('truncate', ['-s', '64M', file]);
    let t = process.hrtime.bigint();
    for (let i = 0; i < N; i++) await loop.detach((await loop.attach(file)).number);
    const lib = usPerCycle(t, N);
    const c = Number(sh(cref, ['loop', file, String(N)]).toString());
    t = process.hrtime.bigint();
    for (let i = 0; i < CLI_N; i++) sh('losetup', ['-d', sh('losetup', ['-f', '--show', file]).toString().trim()]);
    rows.push({ workload: '5 loop attach + detach', lib, c, cli: usPerCycle(t, CLI_N) });
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
  containers = { create: createUs / N, destroy: destroyUs / N };
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

const f = (us) => (us >= 1000 ? `${(us / 1000).toFixed(2)} ms` : `${us.toFixed(0)} µs`);
const v = await dm.version();
console.log(
  `\ndevmapper benchmark: n=${N} (CLI n=${CLI_N}), kernel ${execFileSync('uname', ['-r']).toString().trim()}, device-mapper ${v.major}.${v.minor}.${v.patch}, node ${process.version}\n`,
);
console.log(
  '| workload | library | C reference | libdevmapper | dmsetup/losetup | library ÷ C (target ≤ 1.25) | CLI ÷ library (target ≥ 50) |',
);
console.log('|---|---|---|---|---|---|---|');
for (const r of rows)
  console.log(
    `| ${r.workload} | ${f(r.lib)} | ${f(r.c)} | ${r.libdm ? f(r.libdm) : '—'} | ${f(r.cli)} | ${(r.lib / r.c).toFixed(2)} | ${(r.cli / r.lib).toFixed(1)} |`,
  );
console.log(
  `\nconcurrency: workload 1 from ${concurrency.callers} callers on one pool, ${concurrency.cycles} cycles: ${f(concurrency.us)} per cycle (1 caller: ${f(concurrency.single)}; ratio ${(concurrency.single / concurrency.us).toFixed(2)}x)`,
);
console.log(
  `memory: workload 1, RSS after ${memory.warmUp} cycles ${(memory.rss0 / 2 ** 20).toFixed(1)} MiB, after ${memory.cycles} ${(memory.rss1 / 2 ** 20).toFixed(1)} MiB (difference ${((memory.rss1 - memory.rss0) / 2 ** 20).toFixed(2)} MiB; target ≤ 5), JS heap in use ${(memory.heap0 / 2 ** 20).toFixed(2)} → ${(memory.heap1 / 2 ** 20).toFixed(2)} MiB, fds ${memory.fds0.length} → ${memory.fds1.length}`,
);
console.log(
  `\n3. container lifecycle (DeviceSet, n=${N}): create + mount ${f(containers.create)}, unmount + remove ${f(containers.destroy)} per container (Docker 1.9 on loop devices: ~550 ms and ~720 ms)`,
);
console.log(
  `4. scale: dm.list() of ${scale.devices} devices ${f(scale.listUs)} (a fresh 16 KiB buffer grew ${scale.growths}x; target ≤ 3), pool.status() with ${SCALE} thin devices ${f(scale.statusUs)}, DeviceSet.open() of ${scale.openRecords} records ${f(openUs)} (target < 1 s)`,
);

// The snapshotter race (bench/race.mjs) on the same kernel, after the figures above.
const race = spawnSync(process.execPath, [join(root, 'bench', 'race.mjs')], {
  stdio: 'inherit',
  env: { ...process.env, DEVMAPPER_IN_VM: process.env.DEVMAPPER_IN_VM ?? '' },
});
process.exitCode = race.status ?? 1;
