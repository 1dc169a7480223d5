#!/usr/bin/env node
'use strict';
let cli;
try {
  cli = require('../dist/cli/main.js');
} catch (e) {
  // No addon for this platform: the one line that says what to install, no stack.
  if (e && e.code !== 'ERR_DM_NO_BINARY') throw e;
  console.error(`devmapper: ${e.message}`);
  process.exit(1);
}
cli.main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
