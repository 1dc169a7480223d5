#!/usr/bin/env node
// The main job: a loop-backed thin pool, a base device with ext4, an image
// and a container as copy-on-write snapshots with a file written at each
// layer, then the pool report. Runs inside the UML VM when this host has no
// device-mapper (scripts/vm/run), directly otherwise.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Containerd, missingContainerdTools } from './containerd-kit.mjs';
import { hereOrInVm, root } from './setup.mjs';

hereOrInVm(fileURLToPath(import.meta.url));

const { ThinPool, dm } = createRequire(import.meta.url)(join(root, 'dist/index.js'));
const { native } = createRequire(import.meta.url)(join(root, 'dist/binding.js'));
const { poolReport } = createRequire(import.meta.url)(join(root, 'dist/cli/pool-commands.js'));

const step = (s) => console.log(`\n== ${s}`);

const dir = await mkdtemp(join(tmpdir(), 'devmapper-demo-'));
let pool;
try {
  step(`loop-backed thin pool in ${dir} (sparse 10G data, 256M metadata, 64K blocks)`);
  pool = await ThinPool.createLoopBacked({ dir, name: 'devmapper-demo-pool', dataSize: '10G', metadataSize: '256M' });
  console.log(`pool ${pool.name}: ${pool.path}, data ${pool.loopBacking.dataFile}, metadata ${pool.loopBacking.metadataFile}`);

  step('base device: thin id 0, 1G, ext4');
  await pool.createThin(0);
  const base = await pool.activate(0, { name: 'devmapper-demo-base', size: '1G' });
  execFileSync('mkfs.ext4', ['-q', '-E', 'nodiscard,lazy_itable_init=0,lazy_journal_init=0', base.path]);

  const layers = [
    { id: 0, dev: base, file: 'base.txt', text: 'written in the base device\n' },
    { id: 1, parent: 0, name: 'devmapper-demo-image', file: 'image.txt', text: 'written in the image\n' },
    { id: 2, parent: 1, name: 'devmapper-demo-container', file: 'container.txt', text: 'written in the container\n' },
  ];
  for (const layer of layers) {
    if (layer.parent !== undefined) {
      step(`snapshot ${layer.id} of ${layer.parent} -> ${layer.name}`);
      await pool.createSnapshot(layer.id, layer.parent);
      layer.dev = await pool.activate(layer.id, { name: layer.name, size: '1G' });
    }
    const mnt = join(dir, `mnt-${layer.id}`);
    await mkdir(mnt);
    await native.mount(layer.dev.path, mnt, 'ext4', 0, '');
    await writeFile(join(mnt, layer.file), layer.text);
    const seen = [];
    for (const l of layers)
      seen.push(
        `${l.file}: ${existsSync(join(mnt, l.file)) ? JSON.stringify((await readFile(join(mnt, l.file), 'utf8')).trim()) : 'absent'}`,
      );
    console.log(`${layer.dev.path} sees ${seen.join(', ')}`);
    await native.umount2(mnt, 0);
  }

  step('pool report');
  const [status, usage] = await Promise.all([pool.status(), pool.usage()]);
  console.log(poolReport(pool, status, usage));
  console.log(` Thin devices active: ${(await pool.activeDevices()).map((d) => `${d.name} (thin id ${d.thinId})`).join(', ')}`);
  console.log(` Kernel driver: ${Object.values(await dm.version()).join('.')}`);
} finally {
  if (pool) await pool.destroy();
  await rm(dir, { recursive: true, force: true });
}

// containerd through the proxy plugin, when containerd and runc are installed.
const missing = missingContainerdTools();
if (missing.length) step(`containerd skipped: ${missing.join(', ')} not installed (Debian: apt-get install containerd runc)`);
else await containerdStep();
console.log('\ndemo complete: pools destroyed, files removed');

async function containerdStep() {
  const { Snapshotter } = createRequire(import.meta.url)(join(root, 'dist/index.js'));
  const { buildBusyboxImage } = await import('./oci-busybox.mjs');
  const work = await mkdtemp(join(tmpdir(), 'devmapper-demo-ctr-'));
  const socket = join(work, 'snapshotter.sock');
  const snRoot = join(work, 'snapshotter');
  const ctrDemo = (c, args) => c.ctr(args).then((out) => process.stdout.write(out.replace(/^(?=.)/gm, '  ')));
  step(`containerd with this package's snapshotter: devmapper snapshotter serve --socket ${socket}`);
  const serve = ['snapshotter', 'serve', '--socket', socket, '--root', snRoot, '--data-size', '2G', '--metadata-size', '64M'];
  const plugin = spawn(process.execPath, [join(root, 'bin/devmapper.js'), ...serve, '--base-size', '64M'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let c;
  try {
    await new Promise((resolve, reject) => {
      plugin.stdout.on('data', (d) => (String(d).includes('serving') ? resolve(process.stdout.write(`  ${d}`)) : undefined));
      plugin.once('exit', (code) => reject(new Error(`the plugin exited (${code})`)));
    });
    c = await Containerd.start({ dir: join(work, 'containerd'), proxySnapshotters: { 'devmapper-node': socket } });
    const image = await buildBusyboxImage(join(work, 'busybox.oci.tar'), { name: 'docker.io/library/devmapper-demo:latest' });
    console.log('$ ctr images import --snapshotter devmapper-node busybox.oci.tar');
    await ctrDemo(c, ['images', 'import', '--snapshotter', 'devmapper-node', join(work, 'busybox.oci.tar')]);
    console.log('$ ctr run --rm --snapshotter devmapper-node … sh -c "cat /etc/image-release; df -h /"');
    await ctrDemo(c, ['run', '--rm', '--snapshotter', 'devmapper-node', image.name, 'demo', 'sh', '-c', 'cat /etc/image-release; df -h /']);
    console.log('$ ctr snapshots --snapshotter devmapper-node usage -b');
    await ctrDemo(c, ['snapshots', '--snapshotter', 'devmapper-node', 'usage', '-b']);
    await c.ctr(['images', 'rm', '--sync', image.name]); // and containerd's collector removes the snapshots
  } finally {
    await c?.stop();
    plugin.kill('SIGTERM');
    await new Promise((resolve) => (plugin.exitCode === null ? plugin.once('exit', resolve) : resolve()));
    const s = await Snapshotter.open({ root: snRoot });
    await s.pool.destroy();
    await s.close();
    await rm(work, { recursive: true, force: true });
  }
}
