// Read-only facts from /sys/block and /sys/dev/block. sysfs is in memory:
// the reads run on the JS thread, each quicker than a trip to the threadpool.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import type { DevNumber } from './binding';

export async function sysfsText(block: string, attr: string): Promise<string | undefined> {
  try {
    return readFileSync(`/sys/block/${block}/${attr}`, 'utf8').trim();
  } catch {
    return undefined;
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
