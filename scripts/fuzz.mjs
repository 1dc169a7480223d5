#!/usr/bin/env node
// Fuzz the native decoders of kernel replies (native/dm_decode.cc) with
// libFuzzer under AddressSanitizer and UBSan, for a bounded time.
//
//   node scripts/fuzz.mjs [--seconds N] [--input FILE]
//
// Builds into .fuzz/: the fuzzer, and a seed generator (the same source with
// -DSEED_MAIN) that writes valid replies of each kind as the starting corpus.
// Prints executions and executions per second; exits non-zero on any crash
// or sanitizer report, naming the input that caused it (kept in .fuzz/crashes/).
// --input runs the fuzzer once on one file instead. Needs clang and
// libclang-rt-14-dev (npm test's set-up installs them).
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { root } from './setup.mjs';

const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '60' }, input: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
});
if (values.help) {
  console.log(
    'usage: node scripts/fuzz.mjs [--seconds N] [--input FILE]\n\nFuzzes the native reply decoders with libFuzzer + ASan + UBSan for N seconds (default 60).',
  );
  process.exit(0);
}
const seconds = Number(values.seconds);
if (!Number.isInteger(seconds) || seconds < 1) {
  console.error('fuzz: --seconds takes a whole number of seconds');
  process.exit(2);
}

const out = join(root, '.fuzz');
const sources = [join(root, 'native/fuzz/decode_fuzzer.cc'), join(root, 'native/dm_decode.cc')];
mkdirSync(out, { recursive: true });
const build = (args) => {
  const r = spawnSync('clang++', ['-std=c++17', '-g', '-O1', ...args], { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`fuzz: clang++ failed${r.error ? ` (${r.error.message}): install clang and libclang-rt-14-dev` : ''}`);
    process.exit(1);
  }
};
const fuzzer = join(out, 'decode-fuzzer');
build(['-fsanitize=fuzzer,address,undefined', '-fno-sanitize-recover=undefined', ...sources, '-o', fuzzer]);
const env = { ...process.env, ASAN_OPTIONS: 'abort_on_error=1:detect_leaks=1', UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1' };

if (values.input) {
  const r = spawnSync(fuzzer, [values.input], { stdio: 'inherit', env });
  process.exit(r.status ?? 1);
}

const seeds = join(out, 'seeds');
build(['-DSEED_MAIN', ...sources, '-o', join(out, 'seed-writer')]);
const corpus = join(out, 'corpus');
rmSync(seeds, { recursive: true, force: true });
mkdirSync(seeds, { recursive: true });
mkdirSync(corpus, { recursive: true });
if (spawnSync(join(out, 'seed-writer'), [seeds], { stdio: 'inherit' }).status !== 0) process.exit(1);
cpSync(seeds, corpus, { recursive: true });
const crashes = join(out, 'crashes');
mkdirSync(crashes, { recursive: true });

const r = spawnSync(
  fuzzer,
  [
    corpus,
    `-max_total_time=${seconds}`,
    '-max_len=4096',
    '-rss_limit_mb=2048',
    '-print_final_stats=1',
    `-artifact_prefix=${crashes}/`,
    '-close_fd_mask=1',
  ],
  { encoding: 'utf8', env, maxBuffer: 256 << 20 },
);
const log = `${r.stdout}${r.stderr}`;
const stat = (name) => Number(new RegExp(`stat::${name}:\\s+(\\d+)`).exec(log)?.[1] ?? NaN);
const runs = stat('number_of_executed_units');
const perSecond = stat('average_exec_per_sec');
const cov = /cov: (\d+) ft: (\d+)/g;
let last;
for (let m; (m = cov.exec(log));) last = m;
if (r.status !== 0) {
  console.error(log.split('\n').slice(-60).join('\n'));
  console.error(
    `fuzz: FAILED (exit ${r.status ?? r.signal}); crash inputs: ${
      readdirSync(crashes)
        .map((f) => join(crashes, f))
        .join(', ') || 'none'
    }`,
  );
  process.exit(1);
}
console.log(
  `fuzz: ${runs} executions in ${seconds} s (${perSecond}/s), coverage ${last ? `cov ${last[1]} ft ${last[2]}` : 'n/a'}, corpus ${readdirSync(corpus).length} inputs, no crashes`,
);
