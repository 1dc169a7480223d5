// DM_LIST_DEVICES with far more devices than the first 16 KiB reply buffer
// holds: the addon must grow the buffer and decode every record.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { dm } from '../../lib/index';
import { RUN, sweep } from './helpers';

const COUNT = 2000;

beforeAll(sweep);
afterAll(sweep);

it(`lists ${COUNT} devices with names, uuids and event numbers in one call`, async () => {
  const names = Array.from({ length: COUNT }, (_, i) => `${RUN}many-${String(i).padStart(5, '0')}-${'x'.repeat(40)}`);
  for (let i = 0; i < COUNT; i += 50) {
    await Promise.all(names.slice(i, i + 50).map((n, j) => dm.create(n, { uuid: `LVM-${i + j}-${'u'.repeat(60)}` })));
  }
  const listed = (await dm.list()).filter((d) => d.name.startsWith(`${RUN}many-`));
  // Each record is > 150 bytes: 2000 of them need a reply buffer ~20x the first one.
  expect(listed).toHaveLength(COUNT);
  const byName = new Map(listed.map((d) => [d.name, d]));
  names.forEach((n, i) => expect(byName.get(n)?.uuid).toBe(`LVM-${i}-${'u'.repeat(60)}`));
  for (let i = 0; i < COUNT; i += 50) await Promise.all(names.slice(i, i + 50).map((n) => dm.remove(n)));
  expect((await dm.list()).filter((d) => d.name.startsWith(`${RUN}many-`))).toHaveLength(0);
});
