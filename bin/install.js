#!/usr/bin/env node
'use strict';
// The package's install step (package.json "install"). A prebuild for this
// platform that loads: nothing to do. Else node-gyp-build builds the addon
// from source (it also honours --build-from-source). With nothing to build
// with, one line naming the platform and what to install, and exit 1.
const { spawnSync } = require('node:child_process');
const { existsSync } = require('node:fs');
const { delimiter, join } = require('node:path');
const nodeGypBuild = require('node-gyp-build');
const { TOOLS, platform, prebuilds } = require('./platform.js');

const root = join(__dirname, '..');

/** The addon node-gyp-build would load, when it loads; else undefined. */
function loadable() {
  try {
    const file = nodeGypBuild.path(root);
    require(file);
    return file;
  } catch {
    return undefined;
  }
}

function onPath(cmd) {
  return (process.env.PATH || '').split(delimiter).some((d) => d && existsSync(join(d, cmd)));
}

const fromSource = process.env.npm_config_build_from_source === 'true';
if (!fromSource && loadable()) process.exit(0);

const missing = [['python3', 'python'], ['make'], [process.env.CXX || 'g++', 'c++', 'clang++']]
  .filter((alternatives) => !alternatives.some(onPath))
  .map((alternatives) => alternatives[0]);
if (missing.length) {
  const why = fromSource
    ? 'a build from source was asked for'
    : `no prebuilt addon loads on ${platform()} (the package has: ${prebuilds(root)})`;
  console.error(
    `devmapper: ${why} and there is nothing to build one with (no ${missing.join(', ')}): install ${TOOLS}, then install devmapper again`,
  );
  process.exit(1);
}
const r = spawnSync(process.execPath, [require.resolve('node-gyp-build/bin.js')], { cwd: root, stdio: 'inherit' });
if (r.status !== 0) {
  console.error(
    `devmapper: building the addon for ${platform()} from source failed (above); it needs python3, make, g++ and the Linux headers: install ${TOOLS}, then install devmapper again`,
  );
}
process.exit(r.status ?? 1);
