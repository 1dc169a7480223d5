#!/usr/bin/env node
// npm run lint: the checks that keep the code's shape, all three run (side by side) and reported even
// when one fails; exit 1 if any does.
//   prettier --check    the TypeScript/JavaScript/JSON layout (.prettierrc.json, .prettierignore)
//   eslint              lib/ test/ bench/ scripts/: mistakes, import cycles, who may import
//                       lib/binding and lib/control (eslint.config.mjs)
//   clang-format        native/ C++ layout (.clang-format), without changing the files
// npm run format (--write): rewrites the files with prettier and clang-format; eslint findings are
// left to fix by hand.
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(fileURLToPath(import.meta.url), '..', '..');
const write = process.argv.includes('--write');
const bin = (name) => join(root, 'node_modules', '.bin', name);

/** The C++ sources under native/, relative to the root. */
const nativeFiles = readdirSync(join(root, 'native'), { recursive: true })
  .filter((f) => /\.(cc|h)$/.test(f))
  .sort()
  .map((f) => join('native', f));

/** `cmd args` with its output captured, so that the parallel runs print one after the other. */
function run(label, cmd, args) {
  return new Promise((resolve) => {
    // Output is piped: keep colours when we print to a terminal (any FORCE_COLOR, even 0, means colour).
    const env = process.stdout.isTTY ? { ...process.env, FORCE_COLOR: '1' } : process.env;
    const child = spawn(cmd, args, { cwd: root, env });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('error', (e) => resolve({ label, status: 1, out: `${e.message}\n` }));
    child.on('close', (status) => resolve({ label, status: status ?? 1, out }));
  });
}

function clangFormat() {
  // The Debian package clang-format (in scripts/debian-packages.txt) provides /usr/bin/clang-format.
  if (spawnSync('clang-format', ['--version'], { stdio: 'ignore' }).error) {
    const out = 'clang-format not found: install the Debian package clang-format (apt-get install clang-format)\n';
    return Promise.resolve({ label: 'clang-format', status: 1, out });
  }
  if (write) return run('clang-format', 'clang-format', ['-i', ...nativeFiles]);
  return run('clang-format', 'clang-format', ['--dry-run', '-Werror', ...nativeFiles]).then(summarise);
}

/** clang-format reports each misplaced token in 3 lines (the place, the source line, a caret): report each file once, as prettier does. */
function summarise(r) {
  const places = new Map();
  const other = [];
  const lines = r.out.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^(\S+):\d+:\d+: error: code should be clang-formatted/.exec(lines[i]);
    if (m) {
      places.set(m[1], (places.get(m[1]) ?? 0) + 1);
      i += 2;
    } else if (lines[i].trim()) other.push(lines[i]);
  }
  const files = [...places].map(([f, n]) => `${f}: not clang-formatted (${n} place${n > 1 ? 's' : ''})`);
  return { ...r, out: [...other, ...files].join('\n') };
}

// Prettier's cache (node_modules/.cache/prettier) is per file, so always right; eslint gets none, as
// import-x/no-cycle's verdict on a file depends on files that did not change.
const jobs = write
  ? [run('prettier', bin('prettier'), ['--write', '--log-level', 'warn', '--cache', '.']), clangFormat()]
  : [
      run('prettier', bin('prettier'), ['--check', '--log-level', 'warn', '--cache', '.']),
      run('eslint', bin('eslint'), ['lib', 'test', 'bench', 'scripts']),
      clangFormat(),
    ];

let failed = 0;
for (const { label, status, out } of await Promise.all(jobs)) {
  if (out.trim()) process.stdout.write(`${out.trimEnd()}\n`);
  console.log(`${label}: ${status === 0 ? 'ok' : 'FAILED'}`);
  if (status !== 0) failed++;
}
if (failed && !write) console.log('npm run format fixes the layout (prettier, clang-format); eslint findings need a hand.');
process.exit(failed ? 1 : 0);
