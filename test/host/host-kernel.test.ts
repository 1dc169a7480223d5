// npm test, npm run demo and npm run bench choose between this host's kernel
// and the VM from the kernel itself, not from /dev/mapper/control existing:
// a dmsetup run on a kernel without device-mapper leaves that node behind.
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { hostDeviceMapper } from '../../scripts/host-kernel.mjs';

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'devmapper-host-kernel-'));
  await writeFile(join(dir, 'misc-dm'), '183 hw_random\n236 device-mapper\n237 loop-control\n');
  await writeFile(join(dir, 'misc-none'), '183 hw_random\n237 loop-control\n');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

it('trusts /proc/misc when it lists device-mapper', () => {
  expect(hostDeviceMapper({ misc: join(dir, 'misc-dm'), control: join(dir, 'absent') })).toMatchObject({
    ok: true,
    why: expect.stringContaining('/proc/misc'),
  });
});

it('says no when neither /proc/misc nor a control node has it', () => {
  expect(hostDeviceMapper({ misc: join(dir, 'misc-none'), control: join(dir, 'absent') })).toMatchObject({ ok: false });
});

it('a control node left behind on a kernel without the driver is not device-mapper', () => {
  // 10:236 is device-mapper's misc minor; 10:254 stands for it where this
  // kernel does have the driver (no misc device has that minor).
  const real = hostDeviceMapper().ok;
  const node = join(dir, 'control');
  execFileSync('mknod', [node, 'c', '10', real ? '254' : '236']);
  const r = hostDeviceMapper({ misc: join(dir, 'misc-none'), control: node });
  expect(r.ok).toBe(false);
  expect(r.why).toMatch(/opening it fails: (ENODEV|ENXIO)/);
});

it("this host's answer agrees with its /proc/misc", async () => {
  const { readFile } = await import('node:fs/promises');
  const listed = /\bdevice-mapper$/m.test(await readFile('/proc/misc', 'utf8'));
  if (listed) expect(hostDeviceMapper().ok).toBe(true);
  else expect(hostDeviceMapper({ control: '/nonexistent' }).ok).toBe(false);
});
