// Read-only facts from /sys/block and /sys/dev/block. sysfs is in memory:
// the reads run on the JS thread, each quicker than a trip to the executor.
import { closeSync, openSync, readdirSync, readlinkSync, readSync } from 'node:fs';
import type { DevNumber } from './binding';

// A sysfs attribute is at most a page, and one read returns all of it: open,
// one read into this reused buffer, close (readFileSync adds an fstat and a
// second read, and a buffer per call).
const page = Buffer.allocUnsafe(4096);

export async function sysfsText(block: string, attr: string): Promise<string | undefined> {
  let fd: number | undefined;
  try {
    fd = openSync(`/sys/block/${block}/${attr}`, 'r');
    return page.toString('utf8', 0, readSync(fd, page, 0, page.length, 0)).trim();
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** The dev number of a block device such as 'loop3'. */
export async function sysfsDev(block: string): Promise<DevNumber | undefined> {
  const text = await sysfsText(block, 'dev');
  if (!text) return undefined;
  const [major, minor] = text.split(':').map(Number);
  return { major: major!, minor: minor! };
}

/** 'loop3', 'dm-7', ... for a dev number. */
export async function blockName(dev: DevNumber): Promise<string | undefined> {
  try {
    const target = readlinkSync(`/sys/dev/block/${dev.major}:${dev.minor}`);
    return target.slice(target.lastIndexOf('/') + 1);
  } catch {
    return undefined;
  }
}

/** The minors of the device-mapper devices stacked on `block` (e.g. a pool's thin devices). */
export function dmHolderMinors(block: string): number[] {
  try {
    return readdirSync(`/sys/block/${block}/holders`).flatMap((h) => (/^dm-\d+$/.test(h) ? [Number(h.slice(3))] : []));
  } catch {
    return [];
  }
}
