// The CLI without a kernel: help on every verb with an example, usage errors
// exit 2, failures exit 1 with the DmError message and no stack.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect, it } from 'vitest';

const bin = join(__dirname, '..', '..', 'bin', 'devmapper.js');
const cli = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((resolve) =>
    execFile(process.execPath, [bin, ...args], (err, stdout, stderr) => resolve({ code: err ? Number(err.code) : 0, stdout, stderr })),
  );

const VERBS = [
  ['version'],
  ['ls'],
  ['info'],
  ['table'],
  ['status'],
  ['create'],
  ['remove'],
  ['suspend'],
  ['resume'],
  ['message'],
  ['wait'],
  ['discard'],
  ['loop', 'attach'],
  ['loop', 'detach'],
  ['loop', 'ls'],
  ['loop', 'info'],
  ['pool', 'create'],
  ['pool', 'status'],
  ['pool', 'resize'],
  ['pool', 'destroy'],
  ['pool', 'watch'],
  ['thin', 'create'],
  ['thin', 'snapshot'],
  ['thin', 'activate'],
  ['thin', 'deactivate'],
  ['thin', 'delete'],
  ['thin', 'usage'],
  ['set', 'init'],
  ['set', 'close'],
  ['set', 'info'],
  ['set', 'create'],
  ['set', 'mount'],
  ['set', 'unmount'],
  ['set', 'rm'],
  ['set', 'ls'],
  ['set', 'usage'],
  ['snapshotter', 'serve'],
  ['repl'],
];

it('every verb has --help with an example', async () => {
  const results = await Promise.all(VERBS.map((v) => cli([...v, '--help'])));
  results.forEach((r, i) => {
    expect(r.code, VERBS[i]!.join(' ')).toBe(0);
    expect(r.stdout, VERBS[i]!.join(' ')).toMatch(/Examples?[^:]*:\n {2}devmapper /);
  });
}, 60_000); // 38 processes: slow under the sanitizer run

it('prints the version with --version and -V, exit 0', async () => {
  const { version } = JSON.parse(await readFile(join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
  for (const flag of ['--version', '-V']) expect(await cli([flag])).toMatchObject({ code: 0, stdout: `${version}\n` });
});

it('exits 2 on usage errors', async () => {
  expect((await cli(['bogus'])).code).toBe(2);
  expect((await cli(['info'])).code).toBe(2); // missing argument
  expect((await cli(['message', 'x', 'notanumber', 'hi'])).code).toBe(2);
  const bad = await cli(['create', 'x', '--table', 'not a table']);
  expect(bad.code).toBe(2);
  expect(bad.stderr).toContain('is not "<start> <length> <type> <params>"');
});

it('exits 1 with the DmError message and no stack when the operation fails', async () => {
  // No such device with device-mapper (ENXIO), no device-mapper without: exit 1 either way.
  const r = await cli(['info', 'devmapper-test-no-such-device']);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/^devmapper: /);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  const debug = await cli(['--debug', 'info', 'devmapper-test-no-such-device']);
  expect(debug.stderr).toMatch(/\n\s+at /);
});
