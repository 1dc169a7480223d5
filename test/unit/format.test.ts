import { expect, it } from 'vitest';
import { humanSize } from '../../lib/format';

it('prints sizes the way docker info did', () => {
  // Figures from the seed document's `docker info` output.
  expect(humanSize(65536)).toBe('65.54 kB');
  expect(humanSize(10737418240)).toBe('10.74 GB');
  expect(humanSize(107374182400)).toBe('107.4 GB');
  expect(humanSize(2147483648)).toBe('2.147 GB');
  expect(humanSize(1202000000)).toBe('1.202 GB');
  expect(humanSize(1729000)).toBe('1.729 MB');
  expect(humanSize(0)).toBe('0 B');
  expect(humanSize(999)).toBe('999 B');
  expect(humanSize(1000)).toBe('1 kB');
});
