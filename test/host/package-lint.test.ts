// The packed tarball through the two package linters users and registries
// run: publint (package.json fields against the files shipped; every level,
// suggestions included, as errors) and Are the Types Wrong (the types each
// resolution mode finds: node10, node16 from CJS and from ESM, bundler).
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { publint } from 'publint';
import { afterAll, beforeAll, expect, it } from 'vitest';

const exec = promisify(execFile);
const root = join(__dirname, '..', '..');
let work: string;
let tarball: string;

beforeAll(async () => {
  // /var/tmp, not /tmp: the VM mounts its own tmpfs on /tmp.
  work = await mkdtemp(join('/var/tmp', 'devmapper-lint-'));
  // As package.test.ts packs: prepack (npm run build) would rebuild what npm test's set-up just built,
  // emptying dist/ under the tests that run beside this one.
  const { stdout } = await exec('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: root });
  tarball = join(work, (JSON.parse(stdout) as Array<{ filename: string }>)[0]!.filename);
}, 120_000);
afterAll(() => rm(work, { recursive: true, force: true }));

it('publint finds nothing, suggestions included', async () => {
  const data = await readFile(tarball);
  const { messages } = await publint({
    pack: { tarball: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) },
    level: 'suggestion',
    strict: true,
  });
  expect(messages).toEqual([]);
});

it('Are the Types Wrong finds no problem, and every resolution mode reaches dist/index.d.ts', async () => {
  const attw = join(root, 'node_modules', '.bin', 'attw');
  // attw exits 1 when it finds a problem; the JSON says which either way.
  const { stdout } = await exec(attw, [tarball, '--format', 'json']).catch((e: { stdout: string }) => e);
  const report = JSON.parse(stdout) as {
    problems: Record<string, unknown[]>;
    analysis: { entrypoints: Record<string, { resolutions: Record<string, { resolution?: { fileName: string } }> }> };
  };
  expect(report.problems).toEqual({});
  const modes = report.analysis.entrypoints['.']!.resolutions;
  expect(Object.keys(modes).sort()).toEqual(['bundler', 'node10', 'node16-cjs', 'node16-esm']);
  for (const [mode, r] of Object.entries(modes)) expect(r.resolution?.fileName, mode).toBe('/node_modules/devmapper/dist/index.d.ts');
}, 120_000);
