// The CLI without a kernel: help on every verb with an example, usage errors
// exit 2, failures exit 1 with the DmError message and no stack.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { losetupSpelling } from '../../lib/cli/loop-commands';
import { documentedShapes } from '../cli-json-shapes';

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
  ['reload'],
  ['rename'],
  ['deps'],
  ['mknodes'],
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

// Verbs whose --json output is documented under another verb's shape, or as lines.
const SHAPE_OF: Record<string, string | null> = {
  'thin snapshot': 'thin create',
  'set init': 'set info',
  'set create': 'set ls', // one entry of it
  'pool watch': null, // one object per event line
};
const READ_VERBS = [
  'version',
  'ls',
  'info',
  'table',
  'status',
  'deps',
  'loop ls',
  'loop info',
  'pool status',
  'thin usage',
  'set info',
  'set ls',
  'set usage',
];

it('every verb has --help with an example; every read verb lists --json, and every --json has a documented shape', async () => {
  const results = await Promise.all(VERBS.map((v) => cli([...v, '--help'])));
  const shapes = documentedShapes();
  const withJson: string[] = [];
  results.forEach((r, i) => {
    const verb = VERBS[i]!.join(' ');
    expect(r.code, verb).toBe(0);
    expect(r.stdout, verb).toMatch(/Examples?[^:]*:\n {2}devmapper /);
    if (/^ {2}--json /m.test(r.stdout)) withJson.push(verb);
  });
  for (const verb of READ_VERBS) expect(withJson, verb).toContain(verb);
  for (const verb of withJson) {
    const documented = verb in SHAPE_OF ? SHAPE_OF[verb] : verb;
    if (documented !== null) expect(shapes.has(documented!), `docs/cli-json.md: ${verb}`).toBe(true);
  }
  expect(withJson.length).toBeGreaterThan(READ_VERBS.length);
}, 60_000); // 42 processes: slow under the sanitizer run

it("takes losetup's command line: loop -f [--show] FILE attaches, -d detaches, -a lists", () => {
  expect(losetupSpelling(['loop', '-f', '--show', 'disk.img'])).toEqual(['loop', 'attach', '-f', '--show', 'disk.img']);
  expect(losetupSpelling(['--json', 'loop', '-fP', 'disk.img'])).toEqual(['--json', 'loop', 'attach', '-fP', 'disk.img']);
  expect(losetupSpelling(['loop', '-f'])).toEqual(['loop', 'attach', '-f']);
  expect(losetupSpelling(['loop', '-d', '/dev/loop3', '/dev/loop4'])).toEqual(['loop', 'detach', '/dev/loop3', '/dev/loop4']);
  expect(losetupSpelling(['loop', '--detach', '3'])).toEqual(['loop', 'detach', '3']);
  expect(losetupSpelling(['loop', '-a', '--json'])).toEqual(['loop', 'ls', '--json']);
  // The verbs themselves, and other commands, pass as they are.
  for (const argv of [['loop', 'attach', '-f', 'x'], ['loop', 'detach', '-d'], ['loop'], ['loop', '--help'], ['remove', 'x', '-f'], ['ls']])
    expect(losetupSpelling(argv)).toEqual(argv);
});

it("maps losetup's and dmsetup's option spellings onto the verbs' own (checked before any ioctl)", async () => {
  // --sizelimit and --sector-size reach --size-limit and --block-size: their values are checked as those.
  const limit = await cli(['loop', '-f', '--show', '--sizelimit', '12 parsecs', '/nonexistent']);
  expect(limit).toMatchObject({ code: 2 });
  expect(limit.stderr).toContain('--size-limit');
  const sector = await cli(['loop', 'attach', '-b', '3000', '/nonexistent']);
  expect(sector).toMatchObject({ code: 2 });
  expect(sector.stderr).toContain('3000 is not 512, 1024, 2048 or 4096');
  expect((await cli(['loop', 'attach', '--sector-size', '3000', '/nonexistent'])).stderr).toContain('3000 is not 512');
  expect(await cli(['loop', 'attach'])).toMatchObject({ code: 2, stderr: expect.stringContaining('-f alone') });
  expect((await cli(['loop', '-d'])).code).toBe(2); // no device
  // reload: the table once, from --table or a file.
  const twice = await cli(['reload', 'x', 'x.table', '--table', '0 8 zero']);
  expect(twice).toMatchObject({ code: 2, stderr: expect.stringContaining('give the table once') });
  const unreadable = await cli(['reload', 'x', '/nonexistent.table', '--readonly']);
  expect(unreadable).toMatchObject({ code: 2, stderr: expect.stringContaining('/nonexistent.table: cannot read the table: ENOENT') });
  expect((await cli(['create', 'x', '-r', '-u', 'LVM-1', '--table', 'nonsense'])).code).toBe(2);
  expect(await cli(['create', 'x', '/nonexistent.table', '-r'])).toMatchObject({
    code: 2,
    stderr: expect.stringContaining('/nonexistent.table: cannot read'),
  });
  expect((await cli(['thin', 'activate', 'p', '1', '--name', 'x', '--size', 'lots', '--readonly'])).code).toBe(1); // no such pool: the alias parses
  expect((await cli(['deps', 'x', '-o', 'bogus'])).code).toBe(2);
});

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
  // A bad name is refused before the table is read from stdin (left open here: reading it would never end).
  for (const argv of [
    ['create', 'a/b', '-'],
    ['reload', 'a/b'],
  ]) {
    const r = await cli(argv);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("must not contain '/'");
  }
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
