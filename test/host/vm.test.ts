// The UML harness itself (scripts/vm/run), run on the host.
import { execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

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
  const probe = 'a "quoted" value\non two lines, $(not run) `nor this` \\ ✓';
  const r = await runVm(['sh', '-c', 'printf "hi %s from %s [%s]\\n" "$VM_PROBE" "$PWD" "${LD_PRELOAD-unset}"; exit 3'], {
    VM_PROBE: probe,
    LD_PRELOAD: '',
  });
  expect(r.code).toBe(3);
  expect(r.out).toContain(`hi ${probe} from ${root} [unset]`); // LD_PRELOAD: the shim is UML's, not the guest's
  expect(r.out).not.toContain('\r');
  expect(r.out).not.toMatch(/Halting|System halted/);
});

it('gives a command stdin at end of file when the caller has no terminal (a pipe left open must not hang it)', async () => {
  const r = await runVm(['sh', '-c', 'cat; echo "cat exited $?"; test -t 1 || echo "stdout is no terminal"']);
  expect(r.code).toBe(0);
  expect(r.out).toContain('cat exited 0');
  expect(r.out).toContain('stdout is no terminal');
});

it('on a terminal (script(1) makes one), passes input to the command and ends lines with \\r\\n', async () => {
  const child = spawn('script', ['-qefc', `${vm} sh -c 'echo ready; read line; echo "got $line"; exit 6'`, '/dev/null'], { cwd: root });
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    // Typed once the command waits for it (typeahead during boot is lost);
    // stdin stays open, as script(1) would pass its end of file on.
    const waiting = !out.includes('ready');
    out += d;
    if (waiting && out.includes('ready')) child.stdin.write('typed\n');
  });
  const code = await new Promise((resolve) => child.on('exit', resolve));
  expect(code).toBe(6);
  expect(out).toContain('got typed\r\n');
}, 60_000);

it('stops the VM and leaves nothing behind when it is sent SIGTERM', async () => {
  const { readdir, readFile } = await import('node:fs/promises');
  const child = spawn(vm, ['sleep', '60'], { cwd: root });
  const t0 = Date.now();
  setTimeout(() => child.kill('SIGTERM'), 3000);
  const code = await new Promise((resolve) => child.on('exit', resolve));
  expect(code).toBe(143);
  expect(Date.now() - t0).toBeLessThan(20_000);
  // This run's UML (umid devmapper-vm-PID): neither its directory nor a process.
  const umid = `devmapper-vm-${child.pid}`;
  const dirs = (await readdir('/var/tmp')).filter((f) => f.startsWith('devmapper-vm.'));
  const mine = await Promise.all(
    dirs.map((d) =>
      readdir(`/var/tmp/${d}`).then(
        (f) => f.includes(umid),
        () => false,
      ),
    ),
  );
  expect(mine.filter(Boolean)).toEqual([]);
  // UML's own processes exit a moment after the script: wait for that (bounded), then look.
  const left = async () =>
    (
      await Promise.all(
        (await readdir('/proc')).filter((p) => /^\d+$/.test(p)).map((p) => readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '')),
      )
    ).filter((c) => c.includes(`umid=${umid}\0`));
  for (const end = Date.now() + 20_000; (await left()).length > 0 && Date.now() < end;) await new Promise((r) => setTimeout(r, 100));
  expect(await left()).toEqual([]);
}, 60_000);

it('reports a VM that dies without the exit status (here: a kernel panic) as 125', async () => {
  const r = await runVm(['sh', '-c', 'echo c > /proc/sysrq-trigger; exit 0']);
  expect(r.code).toBe(125);
  expect(r.out).toContain("the VM stopped without the command's exit status");
});

it('works from a directory under /tmp, which the guest covers with its own tmpfs', async () => {
  const { mkdtemp, readFile, writeFile, rm } = await import('node:fs/promises');
  const dir = await mkdtemp('/tmp/vm-cwd-');
  await writeFile(`${dir}/in`, 'from the host');
  const r = await new Promise<{ code: number; out: string }>((resolve) =>
    execFile(vm, ['sh', '-c', 'cat in; echo from the guest > out'], { cwd: dir }, (err, stdout, stderr) =>
      resolve({ code: err ? 1 : 0, out: stdout + stderr }),
    ),
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

describe("--qemu: Debian's x86_64 kernel under QEMU", () => {
  it('returns the exit status, forwards output, environment and directory, and gives stdin at end of file', async () => {
    const r = await runVm(['--qemu', 'sh', '-c', 'cat; printf "hi %s from %s on %s\\n" "$VM_PROBE" "$PWD" "$(uname -r)"; exit 4'], {
      VM_PROBE: 'a "quoted" value',
    });
    expect(r.code).toBe(4);
    expect(r.out).toMatch(new RegExp(`hi a "quoted" value from ${root} on \\d+\\.\\d+\\.\\d+-\\d+-amd64`));
    expect(r.out).not.toContain('\r');
    expect(r.out).not.toContain('SeaBIOS'); // the firmware's console goes to a file
  });

  it('boots with device-mapper, thin-pool and loop, and a full address space (ASan runs)', async () => {
    const libasan = await new Promise<string>((resolve) =>
      execFile('gcc', ['-print-file-name=libasan.so'], (_e, out) => resolve(out.trim())),
    );
    const r = await runVm([
      '--qemu',
      'sh',
      '-c',
      `dmsetup targets; ls /dev/loop-control; LD_PRELOAD=${libasan} node -e "console.log('asan ok')"`,
    ]);
    expect(r.out).toMatch(/thin-pool\s+v1\./);
    expect(r.out).toContain('/dev/loop-control');
    expect(r.out).toContain('asan ok');
    expect(r.code).toBe(0);
  });

  it('reports a kernel panic as 125 with the end of the kernel console', async () => {
    const r = await runVm(['--qemu', 'sh', '-c', 'echo c > /proc/sysrq-trigger; exit 0']);
    expect(r.code).toBe(125);
    expect(r.out).toContain('Kernel panic');
    expect(r.out).toContain("the VM stopped without the command's exit status");
  });
});
