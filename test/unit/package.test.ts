// The package entry points, as a user loads them: require() and ESM import
// by package name (self-reference through package.json "exports").
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

const run = promisify(execFile);
const root = join(__dirname, '..', '..');

// dm.version() resolves on a kernel with device-mapper and rejects with a
// DmError elsewhere: either way the addon loaded and the API answered.
const probe = `
  const answer = (v) => console.log(JSON.stringify(v));
  dm.version().then((v) => answer({ version: v }), (e) => answer({ error: e instanceof DmError, code: e.code }));
`;

it('has been built (npm run build)', () => {
  expect(existsSync(join(root, 'dist', 'index.js'))).toBe(true);
});

it('loads with require()', async () => {
  const { stdout } = await run(
    process.execPath,
    ['-e', `const { dm, loop, DmError } = require('devmapper'); if (typeof loop.attach !== 'function') process.exit(3); ${probe}`],
    { cwd: root },
  );
  const out = JSON.parse(stdout) as { version?: { major: number }; error?: boolean; code?: string };
  expect(out.version?.major === 4 || (out.error === true && typeof out.code === 'string')).toBe(true);
});

it('loads with import', async () => {
  const { stdout } = await run(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `import { dm, loop, DmError } from 'devmapper'; if (typeof loop.attach !== 'function') process.exit(3); ${probe}`,
    ],
    { cwd: root },
  );
  const out = JSON.parse(stdout) as { version?: { major: number }; error?: boolean; code?: string };
  expect(out.version?.major === 4 || (out.error === true && typeof out.code === 'string')).toBe(true);
});

it('ships type declarations for the entry point', () => {
  expect(existsSync(join(root, 'dist', 'index.d.ts'))).toBe(true);
});
