// The record store on a plain directory: atomic writes, temp-file cleanup,
// and opening many records within a small file-descriptor limit.
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { MetadataStore } from '../../lib/metadata-store';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mstore-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

it('writes, reads back, deletes, and drops temp files a crash left', async () => {
  const root = join(dir, 'a');
  const store = await MetadataStore.open(root);
  await store.put({ id: '', deviceId: 1, size: 8, parent: null, transactionId: 1, initialized: true });
  await store.put({ id: 'x', deviceId: 2, size: 8, parent: '', transactionId: 2 });
  await store.writeTransaction({ openTransactionId: 3, op: 'create', id: 'y', deviceId: 3 });
  await writeFile(join(root, 'devices', 'y.json.123456'), '{"half":'); // an interrupted atomic write
  const again = await MetadataStore.open(root);
  expect(again.all().map((r) => r.id).sort()).toEqual(['', 'x']);
  expect(again.devices().map((r) => r.id)).toEqual(['x']);
  expect(await again.readTransaction()).toEqual({ openTransactionId: 3, op: 'create', id: 'y', deviceId: 3 });
  expect(await readdir(join(root, 'devices'))).toEqual(['x.json']);
  await again.delete('x');
  await again.clearTransaction();
  expect((await MetadataStore.open(root)).devices()).toEqual([]);
});

it('opens 3000 records with only 256 file descriptors allowed', async () => {
  const root = join(dir, 'many');
  await MetadataStore.open(root);
  for (let i = 0; i < 3000; i++) await writeFile(join(root, 'devices', `d${i}.json`), JSON.stringify({ id: `d${i}`, deviceId: i + 10, size: 8, parent: '', transactionId: 1 }));
  const lib = JSON.stringify(join(__dirname, '..', '..', 'dist', 'metadata-store.js'));
  const out = await new Promise<string>((resolve, reject) =>
    execFile('sh', ['-c', `ulimit -n 256 && node -e 'require(${lib}).MetadataStore.open(${JSON.stringify(root)}).then((s) => console.log(s.devices().length))'`], (err, stdout, stderr) => (err ? reject(new Error(stderr)) : resolve(stdout))),
  );
  expect(out.trim()).toBe('3000');
});
