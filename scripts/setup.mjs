// Set-up shared by `npm test` and `npm run demo`, so that each works on a
// fresh Debian machine: the Debian packages the kernel tests and the demo
// drive (installed with apt when root and missing), node_modules (npm ci),
// and the build (addon + TypeScript).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hostDeviceMapper } from './host-kernel.mjs';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Debian packages, with what each is for, in scripts/debian-packages.txt (which .ci/run reads too). */
const PACKAGES = readFileSync(join(root, 'scripts', 'debian-packages.txt'), 'utf8')
  .split('\n')
  .map((line) => line.replace(/#.*/, '').trim())
  .filter(Boolean);

function sh(cmd, args, opts = {}) {
  return spawnSync(cmd, args, { cwd: root, stdio: 'inherit', ...opts }).status ?? 1;
}

function installed(pkg) {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.includes('install ok installed');
}

export function setUp() {
  const missing = existsSync('/usr/bin/dpkg-query') ? PACKAGES.filter((p) => !installed(p)) : [];
  if (missing.length > 0) {
    if (process.getuid?.() !== 0) throw new Error(`install these Debian packages first: ${missing.join(' ')}`);
    console.log(`setup: installing ${missing.join(' ')}`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    if (
      sh('apt-get', ['update', '-qq'], { env }) !== 0 ||
      sh('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { env }) !== 0
    ) {
      throw new Error('apt-get install failed');
    }
  }
  if (!existsSync(join(root, 'node_modules', '.package-lock.json'))) {
    console.log('setup: npm ci');
    // A registry without every platform's optional packages fails npm ci; npm
    // install from the lock installs the same versions (see .ci/run).
    if (sh('npm', ['ci']) !== 0 && sh('npm', ['install', '--no-audit', '--no-fund']) !== 0)
      throw new Error('npm ci and npm install failed');
  }
  if (sh('npm', ['run', '--silent', 'build']) !== 0) throw new Error('the build failed');
}

/**
 * The start of npm run demo and npm run bench: set up (unless already inside
 * the VM), then, when this host's kernel has no device-mapper, run `script`
 * again inside the UML VM (`--qemu` in argv: QEMU) and exit with its status.
 * Returns when `script` is to run here. `setUp: false` when the caller has set up already.
 */
export function hereOrInVm(script, { setUp: doSetUp = true } = {}) {
  if (process.env.DEVMAPPER_IN_VM === '1') return;
  if (doSetUp) setUp();
  const host = hostDeviceMapper();
  if (host.ok) return;
  console.log(`${host.why}: running in the UML VM (scripts/vm/run)`);
  const vm = process.argv.includes('--qemu') ? ['--qemu'] : [];
  const r = spawnSync(join(root, 'scripts/vm/run'), [...vm, 'env', 'DEVMAPPER_IN_VM=1', process.execPath, script], {
    stdio: 'inherit',
    cwd: root,
  });
  process.exit(r.status ?? 1);
}
