#!/usr/bin/env node
// The host-kernel part of `npm run bench` (alone: node bench/host.mjs): when
// this machine's own kernel has loop devices, the loop workload runs on it,
// with no VM in between, the one figure here measured on a real kernel.
//
//   - loop attach + detach: the library, the addon's calls alone,
//     bench/c-reference.c (the same syscalls from C) and losetup, interleaved
//     round by round (the order alternating) so that the machine's other load
//     hits all alike; best of rounds and median;
//   - the fixed cost of a call: an empty trip through the addon (native.nop)
//     and loop.info() against C doing what it does;
//   - the syscall budget: strace -f -c of a process making CYCLES attach +
//     detach cycles, less one making none, per cycle, library beside C.
//
//   BENCH_ROUNDS=7  BENCH_HOST_N=500 (cycles a round)  BENCH_HOST_CLI_N=20
//   BENCH_STRACE_CYCLES=200
import { execFileSync, spawnSync } from 'node:child_process';
import { constants, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { best, f, median, missedTargets, race, ratio, usSince, verdict } from './stats.mjs';

const root = join(fileURLToPath(import.meta.url), '..', '..');
const require = createRequire(import.meta.url);
const { loop } = require(join(root, 'dist/index.js'));
const { native } = require(join(root, 'dist/binding.js'));

// `node bench/host.mjs --cycles FILE K`: the child strace counts. Loads the
// library and warms up as the parent does, then makes K cycles.
if (process.argv[2] === '--cycles') {
  const [file, k] = [process.argv[3], Number(process.argv[4])];
  for (let i = 0; i < 20; i++) await loop.detach((await loop.attach(file)).number);
  for (let i = 0; i < k; i++) await loop.detach((await loop.attach(file)).number);
  process.exit(0);
}

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const N = Number(process.env.BENCH_HOST_N ?? 500);
const CLI_N = Number(process.env.BENCH_HOST_CLI_N ?? 20);
const CYCLES = Number(process.env.BENCH_STRACE_CYCLES ?? 200);

const sh = (cmd, args) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

const dir = mkdtempSync(join(tmpdir(), 'devmapper-bench-host-'));
mkdirSync(join(root, '.vm'), { recursive: true });
const cref = join(root, '.vm', 'c-reference');
execFileSync('gcc', ['-O2', '-o', cref, join(root, 'bench', 'c-reference.c')]);
const file = join(dir, 'loopfile');
writeFileSync(file, '');
sh('truncate', ['-s', '64M', file]);

const rows = [];
const loadBefore = load();
let budget;
try {
  const cycle = async () => loop.detach((await loop.attach(file)).number);
  const control = openSync('/dev/loop-control', 'r+');
  const config = { offset: 0, sizeLimit: 0, blockSize: 0, fileName: file.slice(-63), flags: 0 };
  for (let i = 0; i < 50; i++) await cycle(); // warm-up: JIT, the addon's threads, the loop-control fd

  const attach = await race(
    {
      lib: async () => {
        const t0 = process.hrtime.bigint();
        for (let i = 0; i < N; i++) await cycle();
        return usSince(t0, N);
      },
      // The addon's two calls with no TypeScript around them: what the layer above costs.
      native: async () => {
        const t0 = process.hrtime.bigint();
        for (let i = 0; i < N; i++) {
          const d = await native.loopAttach(control, file, constants.O_RDWR, config, { hold: false, status: false });
          await native.loopPathIoctl(`/dev/loop${d.number}`, constants.O_RDONLY, 'LOOP_CLR_FD');
        }
        return usSince(t0, N);
      },
      c: async () => Number(sh(cref, ['loop', file, String(N)])),
      // C with the library's descriptors (the device closed after the attach, reopened for the detach).
      cReopen: async () => Number(sh(cref, ['reopen', file, String(N)])),
      cli: async () => {
        const t0 = process.hrtime.bigint();
        for (let i = 0; i < CLI_N; i++) sh('losetup', ['-d', sh('losetup', ['-f', '--show', file]).trim()]);
        return usSince(t0, CLI_N);
      },
    },
    ROUNDS,
  );
  rows.push({ workload: 'loop attach + detach', ...attach, targets: { best: ['≤', 1.15], median: ['≤', 1.3] } });
  rows.push({ workload: "the same, the addon's calls alone (no TypeScript layer)", lib: attach.native, c: attach.c });
  rows.push({ workload: "the same, C with the library's descriptors (device reopened for the detach)", lib: attach.cReopen, c: attach.c });

  const dev = await loop.attach(file, { readOnly: true });
  try {
    for (let i = 0; i < 50; i++) await loop.info(dev.number);
    const info = await race(
      {
        lib: async () => {
          const t0 = process.hrtime.bigint();
          for (let i = 0; i < N; i++) await loop.info(dev.number);
          return usSince(t0, N);
        },
        c: async () => Number(sh(cref, ['info', String(dev.number), String(N)])),
        cli: async () => {
          const t0 = process.hrtime.bigint();
          for (let i = 0; i < CLI_N; i++) sh('losetup', ['--list', '--json', dev.path]);
          return usSince(t0, CLI_N);
        },
      },
      ROUNDS,
    );
    rows.push({ workload: 'loop.info() (open + LOOP_GET_STATUS64 + close, five sysfs reads)', ...info });
  } finally {
    await loop.detach(dev.number);
  }

  for (let i = 0; i < 1000; i++) await native.nop();
  const nop = await race(
    {
      lib: async () => {
        const t0 = process.hrtime.bigint();
        for (let i = 0; i < 10 * N; i++) await native.nop();
        return usSince(t0, 10 * N);
      },
    },
    ROUNDS,
  );
  rows.push({ workload: 'empty trip: native.nop() (the fixed cost of one call)', ...nop });

  budget = syscallBudget();
} finally {
  rmSync(dir, { recursive: true, force: true });
}

/** strace -f -c of `cmd` with `k` cycles and with none: calls per cycle, by syscall. */
function perCycle(cmd, argsFor) {
  const counts = (k) => {
    const out = join(dir, `strace-${k}`);
    const r = spawnSync('strace', ['-f', '-c', '-o', out, cmd, ...argsFor(k)], { stdio: 'ignore' });
    if (r.status !== 0) throw new Error(`strace ${cmd} failed (${r.status ?? r.error})`);
    const calls = {};
    for (const line of readFileSync(out, 'utf8').split('\n')) {
      const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$/.exec(line);
      if (m && m[2] !== 'total') calls[m[2]] = Number(m[1]);
    }
    return calls;
  };
  const [base, run] = [counts(0), counts(CYCLES)];
  const result = {};
  for (const name of new Set([...Object.keys(base), ...Object.keys(run)])) {
    const d = ((run[name] ?? 0) - (base[name] ?? 0)) / CYCLES;
    if (d >= 0.05) result[name] = d;
  }
  return result;
}

function syscallBudget() {
  if (spawnSync('strace', ['-V'], { stdio: 'ignore' }).status !== 0) return undefined;
  return {
    c: perCycle(cref, (k) => ['loop', file, String(k)]),
    lib: perCycle(process.execPath, (k) => [fileURLToPath(import.meta.url), '--cycles', file, String(k)]),
  };
}

const sum = (o) => Object.values(o).reduce((a, b) => a + b, 0);
console.log(
  `\n## Host kernel: ${sh('uname', ['-r']).trim()}, no VM (loop devices; this kernel has no device-mapper of its own when the VM rows below are run)\n`,
);
console.log(
  `${ROUNDS} rounds, interleaved, the order alternating; ${N} cycles a round (losetup ${CLI_N}); node ${process.version}; ` +
    `load average ${loadBefore} before, ${load()} after (${process.env.BENCH_LOAD_NOTE ?? 'other work on the machine counts'})\n`,
);
console.log(
  '| workload | library best / median | C best / median | losetup median | library ÷ C, best of rounds | library ÷ C, median | losetup ÷ library |',
);
console.log('|---|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(
    `| ${r.workload} | ${f(best(r.lib))} / ${f(median(r.lib))} | ${r.c ? `${f(best(r.c))} / ${f(median(r.c))}` : '—'} | ${r.cli ? f(median(r.cli)) : '—'} | ` +
      `${r.c ? ratio(best(r.lib), best(r.c), r.targets?.best) : '—'} | ${r.c ? ratio(median(r.lib), median(r.c), r.targets?.median) : '—'} | ` +
      `${r.cli ? (median(r.cli) / median(r.lib)).toFixed(1) : '—'} |`,
  );
}
if (budget) {
  const names = [...new Set([...Object.keys(budget.c), ...Object.keys(budget.lib)])].sort(
    (a, b) => (budget.lib[b] ?? 0) - (budget.lib[a] ?? 0),
  );
  const beyond = sum(budget.lib) - sum(budget.c);
  console.log(`\nsyscalls per loop attach + detach (strace -f -c, ${CYCLES} cycles less none, all threads):\n`);
  console.log(`| syscall | ${names.join(' | ')} | total |`);
  console.log(`|---|${names.map(() => '---|').join('')}---|`);
  for (const [who, c] of [
    ['C', budget.c],
    ['library', budget.lib],
  ])
    console.log(`| ${who} | ${names.map((n) => (c[n] ?? 0).toFixed(1)).join(' | ')} | ${sum(c).toFixed(1)} |`);
  console.log(`\nlibrary beyond C: ${beyond.toFixed(1)} syscalls per cycle (target ≤ 6: ${verdict(beyond <= 6)})`);
} else {
  console.log('\nsyscall budget skipped: strace is not installed (Debian: apt-get install strace)');
}
missedTargets();
