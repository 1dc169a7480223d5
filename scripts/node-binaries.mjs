// Official Node.js binaries for the package test's matrix, from the npm
// registry's node-linux-<arch> packages (one per release), kept under
// .cache/node so a rerun does not fetch them again.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const exec = promisify(execFile);
const cache = join(dirname(fileURLToPath(import.meta.url)), '..', '.cache', 'node');

/** The path of `node` for the newest release of `major` on linux-`arch`, fetched once. */
export async function nodeBinary(major, arch = 'x64') {
  const dir = join(cache, `linux-${arch}-${major}`);
  const node = join(dir, 'bin', 'node');
  if (existsSync(node)) return node;
  await mkdir(cache, { recursive: true });
  const tmp = await mkdtemp(join(cache, '.fetch-'));
  try {
    const { stdout } = await exec('npm', ['pack', '--json', '--pack-destination', tmp, `node-linux-${arch}@${major}`], {
      maxBuffer: 64 << 20,
    });
    const [{ filename }] = JSON.parse(stdout);
    await exec('tar', ['-xzf', join(tmp, filename), '-C', tmp, 'package/bin/node']);
    await rm(dir, { recursive: true, force: true });
    await rename(join(tmp, 'package'), dir);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return node;
}
