// The API reference builds with no warnings (an exported type that is not
// documented, a broken link): npm run docs.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

it('npm run docs builds the API reference without warnings', async () => {
  const { stdout } = await promisify(execFile)('npm', ['run', '--silent', 'docs'], { cwd: join(__dirname, '..', '..') });
  expect(stdout).toContain('html generated');
}, 120_000);
