#!/usr/bin/env node
// The snapshotter race (bench/run.mjs runs it last; alone: node bench/race.mjs): one containerd
// (Debian's, with runc) in one VM with two snapshotters on pools of the same
// size: its built-in `devmapper` (dmsetup for every step) and this package's,
// through the proxy plugin (`devmapper snapshotter serve`). One gRPC client
// talks to containerd's own snapshots service, so containerd's bookkeeping is
// part of both. Prints per-cycle medians and the ratios.
//
//   RACE_N=20 (cycles a round)  RACE_ROUNDS=5  RACE_RUNS=20 (ctr run --rm each)
//   RACE_IMPORTS=5 (image imports each)
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Containerd, missingContainerdTools } from '../scripts/containerd-kit.mjs';
import { buildBusyboxImage } from '../scripts/oci-busybox.mjs';
import { hereOrInVm, root } from '../scripts/setup.mjs';

hereOrInVm(fileURLToPath(import.meta.url));

const missing = missingContainerdTools();
if (missing.length) {
  console.log(`\nsnapshotter race skipped: ${missing.join(', ')} not installed (Debian: apt-get install containerd runc)`);
  process.exit(0);
}

const N = Number(process.env.RACE_N ?? 20);
const ROUNDS = Number(process.env.RACE_ROUNDS ?? 5);
const RUNS = Number(process.env.RACE_RUNS ?? 20);
const IMPORTS = Number(process.env.RACE_IMPORTS ?? 5);
const require = createRequire(import.meta.url);
const { ThinPool, dm } = require(join(root, 'dist/index.js'));
const grpc = require('@grpc/grpc-js');
const { call, listMessages, snapshotsClient } = require(join(root, 'dist/snapshotter/proto.js'));

const dir = '/tmp/devmapper-race';
const IMAGE = 'docker.io/library/devmapper-busybox:race';
const THEIRS = 'devmapper';
const OURS = 'devmapper-node';
const SIZE = '4G'; // each pool's data, sparse
const META = '128M';

const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const f = (x) => (x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(x >= 100 ? 0 : x >= 10 ? 1 : 2)} ms`);

/** `devmapper snapshotter serve`, resolved once it prints that it listens. */
function startPlugin(socket, args) {
  const child = spawn(process.execPath, [join(root, 'bin/devmapper.js'), 'snapshotter', 'serve', '--socket', socket, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('devmapper snapshotter: serving')) resolve(child);
    });
    child.once('exit', (code) => reject(new Error(`the plugin exited (${code}): ${out}`)));
  });
}

await rm(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
const archive = join(dir, 'busybox.oci.tar');
const image = await buildBusyboxImage(archive, { name: IMAGE });

const theirPool = await ThinPool.createLoopBacked({ dir: join(dir, 'their-pool'), name: 'race-pool', dataSize: SIZE, metadataSize: META });
const socket = join(dir, 'run', 'plugin.sock');
const plugin = await startPlugin(socket, ['--root', join(dir, 'ours'), '--data-size', SIZE, '--metadata-size', META, '--base-size', '64M']);
const ctr = await Containerd.start({
  dir: join(dir, 'containerd'),
  devmapper: { poolName: theirPool.name, rootPath: join(dir, 'their-root'), baseImageSize: '64MB' },
  proxySnapshotters: { [OURS]: socket },
  manualGc: true,
  ...(process.env.RACE_DEBUG ? { logLevel: 'debug' } : {}),
});

const results = {};
try {
  const both = (round) => (round % 2 === 0 ? [OURS, THEIRS] : [THEIRS, OURS]); // alternate who goes first

  // Image import (unpack into the snapshotter), then gone again with a synchronous garbage collection.
  const imports = { [OURS]: [], [THEIRS]: [] };
  for (let r = 0; r < IMPORTS; r++) {
    for (const sn of both(r)) {
      const t0 = process.hrtime.bigint();
      await ctr.ctr(['images', 'import', '--snapshotter', sn, archive]);
      imports[sn].push(ms(t0));
      await ctr.ctr(['images', 'rm', '--sync', IMAGE]);
    }
  }
  results.import = imports;

  // Both unpacked, for the cycles and the containers.
  for (const sn of [OURS, THEIRS]) await ctr.ctr(['images', 'import', '--snapshotter', sn, archive]);

  // The snapshot cycle through containerd's own snapshots service: Prepare (of the image's committed
  // layer) + Mounts + Remove. containerd removes a snapshot from its snapshotter at its next garbage
  // collection, not in Remove: the collector runs only when asked here (manualGc), and each round ends
  // with one synchronous collection (a lease deleted with --sync) that removes the round's snapshots
  // from the snapshotter, timed as "collection". (On its own schedule the collector can miss a removal
  // that races with it and leave the snapshot until the next deletion: seen here.) A gc.root label
  // keeps a prepared snapshot from the collector all the same.
  const client = snapshotsClient(ctr.address);
  const md = new grpc.Metadata();
  md.set('containerd-namespace', ctr.namespace);
  const cycles = { [OURS]: [], [THEIRS]: [] };
  const collections = { [OURS]: [], [THEIRS]: [] };
  const ownList = snapshotsClient(socket);
  const snapDevices = async () => (await dm.list()).filter((d) => d.name.startsWith(`${theirPool.name}-snap-`)).length;
  const baseline = await snapDevices();
  const leftOn = async (sn) =>
    sn === OURS
      ? (await listMessages(ownList)).flatMap((m) => m.info).filter((i) => i.name.includes('/race-')).length
      : (await snapDevices()) - baseline;
  for (let r = 0; r < ROUNDS; r++) {
    for (const sn of both(r)) {
      for (let i = 0; i < N; i++) {
        const key = `race-${r}-${i}`;
        const t0 = process.hrtime.bigint();
        await call(client, 'Prepare', { snapshotter: sn, key, parent: image.diffId, labels: { 'containerd.io/gc.root': 'race' } }, md);
        await call(client, 'Mounts', { snapshotter: sn, key }, md);
        await call(client, 'Remove', { snapshotter: sn, key }, md);
        cycles[sn].push(ms(t0));
      }
      const lease = (await ctr.ctr(['leases', 'create'])).trim();
      const t0 = process.hrtime.bigint();
      await ctr.ctr(['leases', 'delete', '--sync', lease]);
      collections[sn].push(ms(t0));
      const left = await leftOn(sn);
      if (left !== 0) throw new Error(`${sn}: ${left} snapshots left after a synchronous collection\n${await ctr.logText(40)}`);
    }
  }
  client.close();
  ownList.close();
  results.cycle = cycles;
  results.collection = collections;

  // Containers: ctr run --rm, a start-up and a clean-up of a snapshot each.
  const runs = { [OURS]: [], [THEIRS]: [] };
  for (let r = 0; r < RUNS; r++) {
    for (const sn of both(r)) {
      const t0 = process.hrtime.bigint();
      await ctr.ctr(['run', '--rm', '--snapshotter', sn, IMAGE, `race-${sn}-${r}`, 'true']);
      runs[sn].push(ms(t0));
    }
  }
  results.run = runs;
} finally {
  await ctr.stop().catch((e) => console.error(`containerd stop: ${e.message}`));
  plugin.kill('SIGTERM');
  await new Promise((res) => plugin.once('exit', res));
  for (const d of await dm.list())
    if (d.name.startsWith('race-pool') || d.name.startsWith('devmapper-')) await dm.remove(d.name).catch(() => undefined);
  await theirPool.destroy().catch(() => undefined);
}

const versions = (cmd, args) => execFileSync(cmd, args, { encoding: 'utf8' }).split('\n')[0].trim();
console.log(`\n## snapshotter race: containerd's devmapper against ${OURS} (this package, proxy plugin)\n`);
console.log(`${versions('containerd', ['--version'])}; ${versions('runc', ['--version'])}; node ${process.version}`);
console.log(
  `pools: ${SIZE} data, ${META} metadata, 64K blocks, 64 MB snapshots, ext4; ${ROUNDS} rounds × ${N} cycles each, interleaved; medians\n`,
);
console.log(`| measure | containerd devmapper | ${OURS} | devmapper ÷ ours |`);
console.log('|---|---|---|---|');
const row = (label, key, target) => {
  const theirs = median(results[key][THEIRS]);
  const ours = median(results[key][OURS]);
  console.log(`| ${label} | ${f(theirs)} | ${f(ours)} | ${(theirs / ours).toFixed(2)}${target ? ` (${target})` : ''} |`);
  return theirs / ours;
};
const cycleRatio = row('snapshot cycle: Prepare + Mounts + Remove (gRPC to containerd)', 'cycle', 'target ≥ 5');
row(`collection: one synchronous GC removing a round's ${N} snapshots (ctr leases delete --sync)`, 'collection');
row('image import (unpack one layer)', 'import');
const runRatio = row('ctr run --rm … true', 'run', 'target ≥ 1');
console.log(
  `\ntargets: snapshot cycle ${cycleRatio >= 5 ? 'met' : 'NOT met'} (${cycleRatio.toFixed(2)}×); ctr run ${runRatio >= 1 ? 'met' : 'NOT met'} (${runRatio.toFixed(2)}×)`,
);
