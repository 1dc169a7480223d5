#!/usr/bin/env node
// npm run build:prebuild: the addon for every platform the package ships a
// prebuild for (prebuilds/<platform>-<arch>/devmapper.glibc.node, named as
// node-gyp-build looks for them). arm64 on an x64 machine (and the other way
// round) is built with Debian's cross g++; the machine's own arch goes last,
// so build/ is left with this machine's objects. The glibc
// floor (2.28) is kept by native/glibc_floor.cc and binding.gyp, and held by
// test/host/package.test.ts.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const TARGETS = {
  x64: 'x86_64-linux-gnu',
  arm64: 'aarch64-linux-gnu',
};
const prebuildify = join(root, 'node_modules', 'prebuildify', 'bin.js');
const order = Object.keys(TARGETS).sort((a, b) => Number(a === process.arch) - Number(b === process.arch));
for (const arch of order) {
  const cross = arch !== process.arch;
  const triple = TARGETS[arch];
  const env = cross ? { ...process.env, CC: `${triple}-gcc`, CXX: `${triple}-g++`, LINK: `${triple}-g++` } : process.env;
  const args = [prebuildify, '--napi', '--strip', '--tag-libc', '--arch', arch, ...(cross ? ['--strip-bin', `${triple}-strip`] : [])];
  console.log(`prebuild: linux-${arch}${cross ? ` (cross, ${triple}-g++)` : ''}`);
  const r = spawnSync(process.execPath, args, { cwd: root, env, stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(
      `prebuild: linux-${arch} failed${cross ? ` (it needs g++-${triple.replace(/_/g, '-')}; scripts/debian-packages.txt)` : ''}`,
    );
    process.exit(1);
  }
}
