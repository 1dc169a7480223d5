// Whether this host's own kernel can serve device-mapper, decided from the
// kernel rather than from /dev/mapper/control existing: one dmsetup run on a
// kernel without device-mapper leaves that node (10:236) behind, and opening
// it then fails with ENODEV.
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';

/**
 * `{ ok, why }`: ok when /proc/misc lists device-mapper (dm-mod loaded), or
 * when opening /dev/mapper/control works (which loads dm-mod on demand).
 * `why` says which, or why not, in words for the user. The paths are
 * parameters for tests.
 */
export function hostDeviceMapper({ misc: miscFile = '/proc/misc', control = '/dev/mapper/control' } = {}) {
  const misc = (() => {
    try {
      return readFileSync(miscFile, 'utf8');
    } catch {
      return '';
    }
  })();
  if (/^\s*\d+\s+device-mapper$/m.test(misc)) return { ok: true, why: "this host's kernel has device-mapper (/proc/misc lists it)" };
  if (!existsSync(control))
    return { ok: false, why: "this host's kernel has no device-mapper (not in /proc/misc, no /dev/mapper/control)" };
  try {
    closeSync(openSync(control, 'r+'));
    return { ok: true, why: "this host's kernel has device-mapper (/dev/mapper/control opens)" };
  } catch (e) {
    return { ok: false, why: `this host's kernel has no device-mapper (/dev/mapper/control exists, but opening it fails: ${e.code})` };
  }
}

/**
 * `{ ok, why }`: ok when this host's own kernel has loop devices and this
 * process may drive them (/dev/loop-control opens read-write), as the
 * benchmark's host-kernel part needs.
 */
export function hostLoop({ control = '/dev/loop-control' } = {}) {
  try {
    closeSync(openSync(control, 'r+'));
    return { ok: true, why: `this host's kernel has loop devices (${control} opens)` };
  } catch (e) {
    return { ok: false, why: `no loop devices on this host's kernel for this process (${control}: ${e.code})` };
  }
}
