'use strict';
// What the install step (bin/install.js) and the loader (lib/binding.ts) say
// when no addon loads: the platform as node-gyp-build matches it, the
// prebuilds the package holds, and what a source build needs. Plain CommonJS,
// as the install step runs in a clone before dist/ exists.
const { existsSync, readdirSync } = require('node:fs');
const { join } = require('node:path');

/** What a build from source needs. */
const TOOLS = 'python3, make and g++ (Alpine: apk add python3 make g++ linux-headers)';

/** 'linux-x64 (glibc)': the platform as node-gyp-build matches it (LIBC=musl on Alpine). */
function platform() {
  const libc = process.env.LIBC || (existsSync('/etc/alpine-release') ? 'musl' : 'glibc');
  return `${process.platform}-${process.arch} (${libc})`;
}

/** 'linux-arm64 glibc, linux-x64 glibc': what ROOT/prebuilds holds, or 'none'. */
function prebuilds(root) {
  const dir = join(root, 'prebuilds');
  const found = existsSync(dir)
    ? readdirSync(dir).flatMap((p) =>
        readdirSync(join(dir, p))
          .filter((f) => f.endsWith('.node'))
          .map((f) => `${p} ${f.split('.').slice(1, -1).join(' ') || 'any libc'}`),
      )
    : [];
  return found.length ? found.join(', ') : 'none';
}

module.exports = { TOOLS, platform, prebuilds };
