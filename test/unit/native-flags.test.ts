// The flag names TypeScript declares are the ones the addon exports, with the
// values the kernel's uapi headers give them (linux-libc-dev, which the
// addon's build needs anyway).
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { DM_FLAG_NAMES, LOOP_FLAG_NAMES, native } from '../../lib/binding';

it('device-mapper flags: the same names in C++ and TypeScript, the values of dm-ioctl.h', () => {
  expect(Object.keys(native.dmFlags).sort()).toEqual([...DM_FLAG_NAMES].sort());
  const header = readFileSync('/usr/include/linux/dm-ioctl.h', 'utf8');
  for (const name of DM_FLAG_NAMES) {
    const m = new RegExp(`#define\\s+${name}\\s+\\(1 << (\\d+)\\)`).exec(header);
    expect(m, name).not.toBeNull();
    expect(native.dmFlags[name], name).toBe(1 << Number(m![1]));
  }
});

it('loop flags: the same names in C++ and TypeScript, the values of loop.h', () => {
  expect(Object.keys(native.loopFlags).sort()).toEqual([...LOOP_FLAG_NAMES].sort());
  const header = readFileSync('/usr/include/linux/loop.h', 'utf8');
  for (const name of LOOP_FLAG_NAMES) {
    const m = new RegExp(`\\b${name}\\s*=\\s*(\\d+)`).exec(header);
    expect(m, name).not.toBeNull();
    expect(native.loopFlags[name], name).toBe(Number(m![1]));
  }
});
