// The record store on a plain directory: the append-only log, a line a kill
// cut short, compaction, concurrent changes, temp-file cleanup, and moving a
// set written as one file per record into the log.
import { execFile } from 'node:child_process';
import { appendFile, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { MetadataStore, type DeviceRecord } from '../../lib/metadata-store';

let dir: string;
beforeAll(async () => {
  dir = join(tmpdir(), `mstore-${process.pid}`);
  await mkdir(dir, { recursive: true });
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const rec = (id: string, deviceId: number, extra: Partial<DeviceRecord> = {}): DeviceRecord => ({
  id,
  deviceId,
  size: 8,
  parent: id === '' ? null : '',
  transactionId: deviceId,
  ...extra,
});
const ids = (s: MetadataStore) =>
  s
    .all()
    .map((r) => r.id)
    .sort();
const logLines = async (root: string) => (await readFile(join(root, 'devices.log'), 'utf8')).split('\n').filter(Boolean).length;

it('writes, reads back and deletes records; drops temp files a kill left', async () => {
  const root = join(dir, 'a');
  const store = await MetadataStore.open(root);
  await store.put(rec('', 1, { initialized: true }));
  await store.put(rec('x', 2));
  await store.put(rec('y', 3));
  await store.put(rec('x', 2, { deleted: true }));
  await store.delete('y');
  await store.delete('never-there'); // nothing to log
  await store.writeTransaction({ openTransactionId: 3, op: 'create', id: 'z', deviceId: 4 });
  await store.close();
  await expect(store.put(rec('w', 5))).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARG' });
  await writeFile(join(root, 'transaction.json.123456'), '{"half":'); // an interrupted atomic replace of an earlier build
  expect(await logLines(root)).toBe(6); // the transaction is a line of the log

  const again = await MetadataStore.open(root);
  expect(ids(again)).toEqual(['', 'x']);
  expect(again.get('x')).toEqual(rec('x', 2, { deleted: true }));
  expect(again.devices().map((r) => r.id)).toEqual(['x']);
  expect(await again.readTransaction()).toEqual({ openTransactionId: 3, op: 'create', id: 'z', deviceId: 4 });
  expect((await readdir(root)).sort()).toEqual(['devices.log']);
  await again.delete('x');
  await again.clearTransaction();
  await again.clearTransaction(); // none open: nothing to log
  expect(await logLines(root)).toBe(8);
  await again.close();
  const third = await MetadataStore.open(root);
  expect(third.devices()).toEqual([]);
  expect(await third.readTransaction()).toBeUndefined();
  await third.close();
});

it('takes over the transaction.json an earlier build left open, and keeps an open transaction through a compaction', async () => {
  const root = join(dir, 'legacy-txn');
  const store = await MetadataStore.open(root);
  await store.put(rec('a', 1));
  await store.close();
  const t = { openTransactionId: 7, op: 'delete' as const, id: 'a', deviceId: 1 };
  await writeFile(join(root, 'transaction.json'), JSON.stringify(t));
  const again = await MetadataStore.open(root);
  expect(await again.readTransaction()).toEqual(t);
  expect((await readdir(root)).sort()).toEqual(['devices.log']);
  // Enough changes for a compaction: the open transaction survives it.
  for (let i = 0; i < 100; i++) await again.put(rec('b', 2, { size: i }));
  expect(await logLines(root)).toBeLessThan(100);
  await again.close();
  const third = await MetadataStore.open(root);
  expect(await third.readTransaction()).toEqual(t);
  expect(third.get('b')?.size).toBe(99);
  await third.clearTransaction();
  await third.close();
  const fourth = await MetadataStore.open(root);
  expect(await fourth.readTransaction()).toBeUndefined();
  await fourth.close();
});

it('drops a last line a kill cut short, and cuts it off the file', async () => {
  const root = join(dir, 'torn');
  const store = await MetadataStore.open(root);
  await store.put(rec('a', 1));
  await store.close();
  const whole = await readFile(join(root, 'devices.log'), 'utf8');
  await appendFile(join(root, 'devices.log'), '{"put":{"id":"b","devi'); // the write of b never finished
  const again = await MetadataStore.open(root);
  expect(ids(again)).toEqual(['a']);
  expect(await readFile(join(root, 'devices.log'), 'utf8')).toBe(whole);
  await again.put(rec('c', 3)); // appends after the cut, not after the fragment
  await again.close();
  const third = await MetadataStore.open(root);
  expect(ids(third)).toEqual(['a', 'c']);
  await third.close();
});

it('refuses a log with a whole line that is not a record change', async () => {
  for (const bad of ['{"put":', '{"frob":1}', '[]']) {
    const root = join(dir, `bad-${bad.length}`);
    await mkdir(root, { recursive: true });
    await writeFile(join(root, 'devices.log'), `{"put":{"id":"a","deviceId":1,"size":8,"parent":"","transactionId":1}}\n${bad}\n`);
    await expect(MetadataStore.open(root)).rejects.toMatchObject({
      code: 'ERR_DM_CORRUPT',
      message: expect.stringMatching(/devices\.log/),
    });
  }
});

it('compacts the log when it holds more than twice the lines it needs', async () => {
  const root = join(dir, 'compact');
  const store = await MetadataStore.open(root);
  for (let i = 0; i < 10; i++) await store.put(rec(`keep${i}`, i));
  for (let i = 0; i < 500; i++) await store.put(rec('churn', 100 + i));
  expect(await logLines(root)).toBeLessThanOrEqual(64);
  await store.close();
  const again = await MetadataStore.open(root);
  expect(again.get('churn')?.deviceId).toBe(599);
  expect(again.all()).toHaveLength(11);
  await again.close();
});

it('keeps every one of many concurrent changes, across compactions', async () => {
  const root = join(dir, 'concurrent');
  const store = await MetadataStore.open(root);
  await Promise.all(
    Array.from({ length: 300 }, (_, i) => store.put(rec(`c${i}`, i)).then(() => (i % 3 === 0 ? store.delete(`c${i}`) : undefined))),
  );
  await store.close();
  const again = await MetadataStore.open(root);
  expect(again.all()).toHaveLength(200);
  expect(again.get('c3')).toBeUndefined();
  expect(again.get('c4')?.deviceId).toBe(4);
  await again.close();
});

it('moves a set written as one file per record into the log', async () => {
  const root = join(dir, 'legacy');
  await mkdir(join(root, 'devices'), { recursive: true });
  await writeFile(join(root, 'base.json'), JSON.stringify(rec('', 1, { initialized: true }), null, 2));
  await writeFile(join(root, 'devices', 'x.json'), JSON.stringify(rec('x', 2)));
  await writeFile(join(root, 'devices', 'y.json.123456'), '{"half":'); // an interrupted atomic write
  const store = await MetadataStore.open(root);
  expect(ids(store)).toEqual(['', 'x']);
  expect(store.get('')?.initialized).toBe(true);
  expect((await readdir(root)).sort()).toEqual(['devices.log']);
  await store.close();

  // A kill after the log was written but before the files were removed: the log wins.
  await mkdir(join(root, 'devices'));
  await writeFile(join(root, 'devices', 'x.json'), JSON.stringify(rec('x', 99)));
  const again = await MetadataStore.open(root);
  expect(again.get('x')?.deviceId).toBe(2);
  expect((await readdir(root)).sort()).toEqual(['devices.log']);
  await again.close();
});

it('moves 3000 per-file records with only 256 file descriptors allowed', async () => {
  const root = join(dir, 'many');
  await mkdir(join(root, 'devices'), { recursive: true });
  for (let i = 0; i < 3000; i++) await writeFile(join(root, 'devices', `d${i}.json`), JSON.stringify(rec(`d${i}`, i + 10)));
  const lib = JSON.stringify(join(__dirname, '..', '..', 'dist', 'metadata-store.js'));
  const out = await new Promise<string>((resolve, reject) =>
    execFile(
      'sh',
      [
        '-c',
        `ulimit -n 256 && node -e 'require(${lib}).MetadataStore.open(${JSON.stringify(root)}).then(async (s) => { console.log(s.devices().length); await s.close(); })'`,
      ],
      (err, stdout, stderr) => (err ? reject(new Error(stderr)) : resolve(stdout)),
    ),
  );
  expect(out.trim()).toBe('3000');
  expect(await logLines(root)).toBe(3000);
});

it('replaces a record under a new id in one log line (a snapshot commit): a kill leaves the old or the new, never both', async () => {
  const root = join(dir, 'replace');
  const store = await MetadataStore.open(root);
  await store.put(rec('active-key', 7));
  const before = await logLines(root);
  await store.replace('active-key', rec('committed-name', 7));
  expect(await logLines(root)).toBe(before + 1);
  expect(ids(store)).toEqual(['committed-name']);
  await store.close();
  expect(ids(await MetadataStore.open(root))).toEqual(['committed-name']);
  // The same line cut short by a kill: the old record stands.
  const torn = join(dir, 'replace-torn');
  const s2 = await MetadataStore.open(torn);
  await s2.put(rec('active-key', 8));
  await s2.close();
  await appendFile(join(torn, 'devices.log'), '{"put":{"id":"committed-name","deviceId":8,"si');
  const s3 = await MetadataStore.open(torn);
  expect(ids(s3)).toEqual(['active-key']);
  await s3.close();
});
