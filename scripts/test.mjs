#!/usr/bin/env node
// npm test: set up (scripts/setup.mjs), lint (scripts/lint.mjs), run the unit tests on this host, the kernel tests on a
// real kernel (this one when it has device-mapper and we are root, else the
// UML VM), and print one closing line: "N passed, N failed, N skipped".
//
//   DEVMAPPER_TEST_VM=1  always use the VM;  =0  never (fail if this kernel cannot)
//   npm test -- FILTER   passes FILTER (e.g. a test file) to vitest
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { hostDeviceMapper } from './host-kernel.mjs';
import { root, setUp } from './setup.mjs';

const results = join(root, '.vm', 'results'); // on the host fs, so the VM can write it too
const args = process.argv.slice(2);

function run(cmd, argv) {
  console.log(`\n$ ${[cmd, ...argv].join(' ')}`);
  return spawnSync(cmd, argv, { cwd: root, stdio: 'inherit' }).status ?? 1;
}

/** The CPUs this process may run on (taskset's list, e.g. "0-3,6"), in order. */
function allowedCpus() {
  const list =
    spawnSync('taskset', ['-cp', String(process.pid)], { encoding: 'utf8' })
      .stdout?.split(':')[1]
      ?.trim() ?? '';
  return list.split(',').flatMap((part) => {
    const [a, b = a] = part.split('-').map(Number);
    return Number.isInteger(a) && Number.isInteger(b) ? Array.from({ length: b - a + 1 }, (_, i) => a + i) : [];
  });
}

/** `pid` and every process below it. */
function descendants(pid) {
  const children =
    spawnSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' })
      .stdout?.split('\n')
      .map(Number)
      .filter((p) => p > 0) ?? [];
  return [pid, ...children.flatMap(descendants)];
}

function fail(message) {
  console.error(`npm test: ${message}`);
  console.log('0 passed, 1 failed');
  process.exit(1);
}

const host = hostDeviceMapper();
const hostKernel = host.ok && process.getuid?.() === 0;
const mode = process.env.DEVMAPPER_TEST_VM;
const useVm = mode === '1' || (mode !== '0' && !hostKernel);
if (mode === '0' && !hostKernel) fail(`DEVMAPPER_TEST_VM=0 but ${host.ok ? 'we are not root' : host.why}`);
if (useVm && process.getuid?.() !== 0) fail('the kernel tests need root (to run the UML VM, or device-mapper itself)');
// The route, for the tests that reach the kernel from the host (test/host).
process.env.DEVMAPPER_TEST_VM = useVm ? '1' : '0';
console.log(
  `npm test: ${host.why}; kernel tests run ${useVm ? 'in the UML VM' : 'on this host'}${mode === '1' ? ' (DEVMAPPER_TEST_VM=1)' : ''}`,
);

try {
  setUp(); // apt packages, node_modules and the build, when missing
} catch (e) {
  fail(e.message);
}

// npm run lint: a failure counts as one failed test; the tests still run.
const lint = run('node', [join(root, 'scripts', 'lint.mjs')]);

rmSync(results, { recursive: true, force: true });
mkdirSync(results, { recursive: true });

const vitest = (project) => [
  'vitest',
  'run',
  '--project',
  project,
  '--passWithNoTests',
  '--reporter=default',
  '--reporter=json',
  `--outputFile.json=${join(results, `${project}.json`)}`,
  ...args,
];

// A guest that hangs (a task stuck in the kernel outlives vitest's timeouts)
// must not hang CI.
const onKernel = (argv) => (useVm ? run(join(root, 'scripts/vm/run'), ['--timeout', '3600', ...argv]) : run(argv[0], argv.slice(1)));

// The sanitizer build of the addon (CMakeLists.txt, AddressSanitizer +
// UBSan) runs the unit tests on this host and the kernel tests on a real
// kernel. ASan's shadow memory does not fit in a UML guest's address space,
// so in the VM case they boot Debian's own kernel under QEMU (scripts/vm/run
// --qemu), with shorter fuzz and soak runs as QEMU emulates the CPU.
// DEVMAPPER_TEST_SANITIZE=0 skips this.
const sanitize = process.env.DEVMAPPER_TEST_SANITIZE !== '0';
const named = (project, as) => vitest(project).map((a) => a.replace(`${project}.json`, `${as}.json`));
let sanitized;
let kernelAsan;
if (sanitize) {
  if (run('npm', ['run', '--silent', 'build:asan']) !== 0) fail('the sanitizer build failed');
  const libasan = spawnSync('gcc', ['-print-file-name=libasan.so'], { encoding: 'utf8' }).stdout.trim();
  sanitized = [
    `LD_PRELOAD=${libasan}`,
    'ASAN_OPTIONS=detect_leaks=0:abort_on_error=1',
    'UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1',
    `DEVMAPPER_ADDON=${join(root, 'build-asan/Release/devmapper.node')}`,
  ];
  // Less the crash tests, the CLI test (a node start-up per command, about
  // 4 s each under ASan and emulation; the CLI calls the same library), the
  // doc examples (a node child each, mkfs included: 404 s of a loaded run;
  // the calls are the library's, which the other files run here), and
  // the tests of containerd and the proxy plugin (Go daemons and node
  // children under emulation: 290 s of a loaded run; the library calls they
  // make are the Snapshotter's, which the conformance test runs here).
  kernelAsan = [
    'env',
    ...sanitized,
    'DEVMAPPER_FUZZ_CALLS=1000',
    'DEVMAPPER_SOAK_CYCLES=300',
    'npx',
    ...named('kernel', 'kernel-asan'),
    '--exclude',
    'test/kernel/device-set-crash.test.ts',
    '--exclude',
    'test/kernel/snapshotter-crash.test.ts',
    '--exclude',
    'test/kernel/cli.test.ts',
    '--exclude',
    'test/kernel/doc-examples.test.ts',
    '--exclude',
    'test/kernel/containerd.test.ts',
    '--exclude',
    'test/kernel/containerd-proxy.test.ts',
    '--exclude',
    'test/kernel/snapshotter-serve.test.ts',
  ];
}

// In the VM case the QEMU guest (the sanitizer kernel tests, the longest
// stage) starts first and runs beside everything else: the unit and host
// tests, then the UML guest, which keeps to one host CPU. Each guest has its
// own kernel and /tmp. QEMU's output is kept and printed after, so the runs
// do not interleave.
let qemu;
if (useVm && kernelAsan) {
  const log = join(results, 'kernel-asan.log');
  const argv = ['--qemu', '--timeout', '3600', ...kernelAsan];
  console.log(`\n$ scripts/vm/run ${argv.join(' ')} > ${log} (beside the runs below)`);
  const out = openSync(log, 'w');
  // UML runs pinned to one CPU (scripts/vm/run, DEVMAPPER_VM_CPU; here the
  // last this process may use): QEMU gets the others.
  const cpus = allowedCpus();
  process.env.DEVMAPPER_VM_CPU ??= String(cpus.at(-1));
  const others = cpus.filter((c) => String(c) !== process.env.DEVMAPPER_VM_CPU);
  const cmd = others.length ? ['taskset', '-c', others.join(','), join(root, 'scripts/vm/run')] : [join(root, 'scripts/vm/run')];
  const child = spawn(cmd[0], [...cmd.slice(1), ...argv], { cwd: root, stdio: ['ignore', out, out] });
  const done = new Promise((resolve) => child.on('close', (code) => resolve(code ?? 1)));
  qemu = { child, done, out, log, argv, cpus, others };
}

const runs = [
  { project: 'unit', status: run('npx', vitest('unit')) },
  // The VM harness's own tests only when the kernel tests depend on it.
  { project: 'host', status: run('npx', [...vitest('host'), ...(useVm ? [] : ['--exclude', 'test/host/vm.test.ts'])]) },
];
if (sanitize) runs.push({ project: 'unit-asan', status: run('env', [...sanitized, 'npx', ...named('unit', 'unit-asan')]) });
runs.push({ project: 'kernel', status: onKernel(['npx', ...vitest('kernel')]) });

if (qemu) {
  // UML is done: let QEMU (still running, as a rule) have every CPU.
  if (qemu.others.length)
    for (const pid of descendants(qemu.child.pid))
      spawnSync('taskset', ['-a', '-cp', qemu.cpus.join(','), String(pid)], { stdio: 'ignore' });
  const status = await qemu.done;
  closeSync(qemu.out);
  console.log(`\n$ scripts/vm/run ${qemu.argv.join(' ')}  (its output)\n${readFileSync(qemu.log, 'utf8')}`);
  runs.push({ project: 'kernel-asan', status });
} else if (kernelAsan) {
  runs.push({ project: 'kernel-asan', status: run(kernelAsan[0], kernelAsan.slice(1)) });
}

let passed = 0;
let failed = 0;
let skipped = 0;
const failures = [];
for (const r of runs) {
  const file = join(results, `${r.project}.json`);
  if (!existsSync(file)) {
    console.error(`npm test: the ${r.project} run wrote no results (exit ${r.status})`);
    failed++;
    continue;
  }
  const j = JSON.parse(readFileSync(file, 'utf8'));
  // Name what failed in the closing lines too: CI may keep only the tail of the log.
  for (const suite of j.testResults) {
    const where = relative(root, suite.name);
    for (const t of suite.assertionResults.filter((a) => a.status === 'failed')) failures.push(`${r.project}: ${where} > ${t.fullName}`);
    if (suite.status === 'failed' && !suite.assertionResults.some((a) => a.status === 'failed'))
      failures.push(`${r.project}: ${where} (${(suite.message || 'failed outside its tests').split('\n')[0]})`);
  }
  passed += j.numPassedTests;
  failed += j.numFailedTests;
  skipped += j.numPendingTests + j.numTodoTests;
  if (r.status !== 0 && j.numFailedTests === 0) {
    console.error(`npm test: the ${r.project} run exited ${r.status} (errors outside tests)`);
    failed++;
  }
}
if (lint !== 0) {
  console.error('npm test: npm run lint failed (npm run format fixes the layout; eslint findings need a hand)');
  failed++;
}
if (failures.length) console.log(`\nfailed:\n${failures.map((f) => `  ${f}`).join('\n')}`);
console.log(`\nkernel tests ran on ${useVm ? 'the UML VM (scripts/vm/run)' : "this host's kernel"}`);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
