// The addon's executor (native/executor.cc): calls settle in any number and
// from worker threads, a worker thread may end with calls in flight, and an
// idle executor does not keep the process alive.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { expect, it } from 'vitest';
import { native } from '../../lib/binding';

const binding = join(__dirname, '..', '..', 'dist', 'binding.js');

it('settles many concurrent calls, each once', async () => {
  const settled = await Promise.all(Array.from({ length: 500 }, () => native.nop()));
  expect(settled).toHaveLength(500);
  expect(settled.every((v) => v === undefined)).toBe(true);
});

it('rejects with the errno of a failed call, as a SysError-shaped Error', async () => {
  await expect(native.loopPathIoctl('/nonexistent/loop', 0, 'LOOP_CLR_FD')).rejects.toMatchObject({
    errno: 2,
    syscall: 'open',
    op: '/nonexistent/loop',
  });
});

it('runs in worker threads, and a worker may end with calls in flight', async () => {
  // dist/ is what a worker can load without the test's TypeScript transform; it is built before the tests run.
  const body = (exitEarly: boolean) => `
    const { native } = require(${JSON.stringify(binding)});
    const { parentPort } = require('node:worker_threads');
    (async () => {
      for (let i = 0; i < 50; i++) await native.nop();
      for (let i = 0; i < 50; i++) native.nop();
      ${exitEarly ? 'process.exit(7);' : "parentPort.postMessage('done');"}
    })();`;
  const run = (exitEarly: boolean) =>
    new Promise<{ code: number; messages: unknown[] }>((resolve, reject) => {
      const messages: unknown[] = [];
      const w = new Worker(body(exitEarly), { eval: true });
      w.on('message', (m) => messages.push(m));
      w.on('error', reject);
      w.on('exit', (code) => resolve({ code, messages }));
    });
  expect(await run(false)).toEqual({ code: 0, messages: ['done'] });
  expect((await run(true)).code).toBe(7);
});

it('does not keep an idle process alive', () => {
  const r = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(binding)}).native.nop().then(() => console.log('settled'))`], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  expect(r.error).toBeUndefined();
  expect(r.status).toBe(0);
  expect(r.stdout.trim()).toBe('settled');
});
