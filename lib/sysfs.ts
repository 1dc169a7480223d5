// Read-only facts from /sys/block and /sys/dev/block.
import { readdir, readFile, readlink } from 'node:fs/promises';
import type { DevNumber } from './binding';

export async function sysfsText(block: string, attr: string): Promise<string | undefined> {
  try {
    return (await readFile(`/sys/block/${block}/${attr}`, 'utf8')).trim();
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
    const target = await readlink(`/sys/dev/block/${dev.major}:${dev.minor}`);
    return target.slice(target.lastIndexOf('/') + 1);
  } catch {
    return undefined;
  }
}

/** The device-mapper names of the devices stacked on `block` (e.g. a pool's thin devices). */
export async function dmHolders(block: string): Promise<string[]> {
  const holders = await readdir(`/sys/block/${block}/holders`).catch(() => [] as string[]);
  const names = await Promise.all(holders.map((h) => sysfsText(h, 'dm/name')));
  return names.filter((n): n is string => n !== undefined);
}
