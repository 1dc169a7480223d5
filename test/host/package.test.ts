// The published package, as a user gets it: npm pack, install into an empty
// project on a PATH with no compiler, then load it and talk to the kernel
// (in the VM when this host has no device-mapper).
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { hostDeviceMapper } from '../../scripts/host-kernel.mjs';

const exec = promisify(execFile);
const root = join(__dirname, '..', '..');
let work: string;
let app: string;
let tarball: string;

beforeAll(async () => {
  // /var/tmp, not /tmp: the VM mounts its own tmpfs on /tmp.
  work = await mkdtemp(join('/var/tmp', 'devmapper-pack-'));
  await exec('npm', ['run', '--silent', 'build:prebuild'], { cwd: root });
  const { stdout } = await exec('npm', ['pack', '--json', '--pack-destination', work], { cwd: root });
  const [packed] = JSON.parse(stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
  tarball = join(work, packed!.filename);
  files = packed!.files.map((f) => f.path);
  // A PATH with node and sh (npm runs install scripts with them) and nothing
  // else: no cc, g++, make or python3, so the install must use the prebuild.
  const bin = join(work, 'bin');
  await mkdir(bin);
  await symlink(process.execPath, join(bin, 'node'));
  await symlink('/bin/sh', join(bin, 'sh'));
  app = join(work, 'app');
  await mkdir(app);
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
  const npmCli = join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js');
  await exec(process.execPath, [npmCli, 'install', '--prefer-offline', '--no-audit', '--no-fund', tarball], {
    cwd: app,
    env: { ...process.env, PATH: bin },
  });
}, 300_000);
afterAll(() => rm(work, { recursive: true, force: true }));

let files: string[] = [];

it('packs the prebuild, compiled JS, types, CLI and README, and no tests or TypeScript sources', () => {
  expect(files).toEqual(
    expect.arrayContaining([
      'prebuilds/linux-x64/devmapper.glibc.node',
      'dist/index.js',
      'dist/index.d.ts',
      'dist/cli/main.js',
      'bin/devmapper.js',
      'README.md',
      'LICENSE',
      'package.json',
      'proto/containerd/services/snapshots/v1/snapshots.proto', // the proxy plugin loads it at run time
      'proto/containerd/types/mount.proto',
    ]),
  );
  expect(files.filter((f) => f.startsWith('test/') || f.startsWith('lib/') || f.startsWith('scripts/') || f.endsWith('.test.ts'))).toEqual(
    [],
  );
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

it('installs without a compiler, loads the prebuild, and reaches the kernel via require, import and the CLI', async () => {
  const pkg = join(app, 'node_modules', 'devmapper');
  expect(existsSync(join(pkg, 'build'))).toBe(false); // nothing was compiled
  const script = join(work, 'probe.sh');
  await writeFile(
    script,
    [
      `cd ${app}`,
      `node -e "require('devmapper').dm.version().then((v) => console.log('require', JSON.stringify(v)))"`,
      `node --input-type=module -e "import { dm } from 'devmapper'; console.log('import', JSON.stringify(await dm.version()))"`,
      `./node_modules/.bin/devmapper --json version | node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log('cli', JSON.stringify(JSON.parse(s).driver)))"`,
    ].join('\n'),
  );
  // The route npm test chose (scripts/test.mjs), else: the VM when this kernel has no device-mapper.
  const route = process.env.DEVMAPPER_TEST_VM;
  const inVm = route === '1' || (route !== '0' && !hostDeviceMapper().ok);
  const { stdout } = inVm ? await exec(join(root, 'scripts', 'vm', 'run'), ['sh', script]) : await exec('sh', [script]);
  for (const how of ['require', 'import', 'cli']) expect(stdout).toMatch(new RegExp(`${how} \\{"major":4,"minor":\\d+,"patch":\\d+\\}`));
}, 120_000);
