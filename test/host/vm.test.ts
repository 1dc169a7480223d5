// The UML harness itself (scripts/vm/run), run on the host.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { expect, it } from 'vitest';

const root = join(__dirname, '..', '..');
const vm = join(root, 'scripts', 'vm', 'run');

function runVm(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(vm, args, { cwd: root, env: { ...process.env, ...env }, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr });
    });
  });
}

it('returns the command exit status and forwards its output, environment and directory', async () => {
  const r = await runVm(['sh', '-c', 'echo "hi $VM_PROBE from $PWD"; exit 3'], { VM_PROBE: 'a "quoted" value' });
  expect(r.code).toBe(3);
  expect(r.out).toContain(`hi a "quoted" value from ${root}`);
  expect(r.out).not.toContain('\r');
});

it('works from a directory under /tmp, which the guest covers with its own tmpfs', async () => {
  const { mkdtemp, readFile, writeFile, rm } = await import('node:fs/promises');
  const dir = await mkdtemp('/tmp/vm-cwd-');
  await writeFile(`${dir}/in`, 'from the host');
  const r = await new Promise<{ code: number; out: string }>((resolve) =>
    execFile(vm, ['sh', '-c', 'cat in; echo from the guest > out'], { cwd: dir }, (err, stdout, stderr) => resolve({ code: err ? 1 : 0, out: stdout + stderr })),
  );
  expect(r.code).toBe(0);
  expect(r.out).toContain('from the host');
  expect(await readFile(`${dir}/out`, 'utf8')).toBe('from the guest\n');
  await rm(dir, { recursive: true, force: true });
});

it('boots a kernel with device-mapper, thin-pool and loop', async () => {
  const r = await runVm(['sh', '-c', 'uname -r; ls -l /dev/mapper/control /dev/loop-control; dmsetup targets']);
  expect(r.code).toBe(0);
  expect(r.out).toMatch(/thin-pool\s+v1\./);
  expect(r.out).toMatch(/snapshot\s+v1\./);
  expect(r.out).toContain('/dev/loop-control');
});

it('keeps SIMD state intact across guest context switches (the xstate shim)', async () => {
  const r = await runVm(['node', join(__dirname, 'simd-check.mjs')]);
  expect(r.out).toMatch(/simd-check: \d+ iterations in 4 threads, 0 with mismatches/);
  expect(r.code).toBe(0);
});

it('prints usage', async () => {
  const r = await runVm(['--help']);
  expect(r.code).toBe(0);
  expect(r.out).toContain('usage: scripts/vm/run');
});
