import { expect, it } from 'vitest';
import { native } from '../../lib/binding';
import { mountFlags } from '../../lib/filesystem';

const C = native.sysConstants;

it('turns generic mount options into flags and keeps the rest as filesystem data', () => {
  expect(mountFlags(['noatime', 'nodiratime', 'discard', 'nouuid'])).toEqual({
    flags: C.MS_NOATIME | C.MS_NODIRATIME,
    data: 'discard,nouuid',
  });
  expect(mountFlags(['ro', 'nosuid', 'nodev', 'noexec'])).toEqual({
    flags: C.MS_RDONLY | C.MS_NOSUID | C.MS_NODEV | C.MS_NOEXEC,
    data: '',
  });
  expect(mountFlags(['noatime', 'atime'])).toEqual({ flags: 0, data: '' }); // later options win
  expect(mountFlags(['rw'], true).flags).toBe(C.MS_RDONLY); // readOnly is the caller's word
  expect(mountFlags(['defaults', 'data=ordered'])).toEqual({ flags: 0, data: 'data=ordered' });
});
