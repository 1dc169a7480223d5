// What DeviceSet.open sets up before the set itself: its pool (an existing
// one, LVM's from direct-lvm, one on given devices, or loop-backed under
// root/devicemapper) and the lock that keeps a second process out.
import { constants } from 'node:fs';
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { setUpDirectLvm, type DirectLvmOptions } from '../direct-lvm';
import * as dm from '../dm';
import { DmError } from '../errors';
import { defaultPoolName, ThinPool } from '../pool/index';
import * as sys from '../sys';
import type { DeviceSetOptions } from './options';

/**
 * The set's pool. `owns`: the set brought it up from its own devices or
 * files and takes it down on close; `created`: this call activated it.
 * direct-lvm makes LVM's pool on first use, then uses it as a given poolName.
 */
export async function openPool(
  root: string,
  o: Partial<DeviceSetOptions>,
  recordedName: string | undefined,
  directLvm: DirectLvmOptions | undefined,
): Promise<{ pool: ThinPool; owns: boolean; created: boolean }> {
  const poolName = directLvm ? (await setUpDirectLvm(directLvm)).poolName : o.poolName;
  if (poolName !== undefined) return { pool: await ThinPool.open(poolName), owns: false, created: false };
  const dir = join(root, 'devicemapper');
  const name = recordedName ?? (await defaultPoolName(dir));
  const live = (await dm.info(name).catch(() => undefined))?.activeTable === true;
  const table = { blockSize: o.blockSize, errorIfNoSpace: false };
  if (o.dataDevice !== undefined && o.metadataDevice !== undefined) {
    if (live) return { pool: await ThinPool.open(name), owns: true, created: false };
    const pool = await ThinPool.create({
      name,
      dataDevice: o.dataDevice,
      metadataDevice: o.metadataDevice,
      zeroMetadata: recordedName === undefined,
      ...table,
    });
    return { pool, owns: true, created: true };
  }
  const pool = await ThinPool.createLoopBacked({ dir, name, dataSize: o.dataSize, metadataSize: o.metadataSize, ...table });
  return { pool, owns: true, created: !live };
}

/**
 * How long a lock whose recorded holder has died may stay held: a process
 * killed between forking a tool (mkfs, resize2fs, thin_dump) and that tool's
 * exec leaves the lock's open file in the fork until the exec closes it.
 */
const DEAD_HOLDER_WAIT_MS = 10_000;

/**
 * One process at a time: an exclusive flock on root/lock holding the owner's
 * pid. A live holder is refused at once (ERR_DM_LOCKED); one that no longer
 * exists is waited out, bounded (see DEAD_HOLDER_WAIT_MS).
 */
export async function takeLock(root: string): Promise<FileHandle> {
  const path = join(root, 'lock');
  for (const end = Date.now() + DEAD_HOLDER_WAIT_MS; ;) {
    const fh = await open(path, constants.O_RDWR | constants.O_CREAT, 0o600);
    try {
      await sys.lockExclusiveNow(fh.fd, path);
    } catch (e) {
      await fh.close();
      if ((e as DmError).errno !== osConstants.errno.EWOULDBLOCK) throw e;
      const holder = (await readFile(path, 'utf8').catch(() => '')).trim();
      if (holder && !alive(Number(holder)) && Date.now() < end) {
        await sleep(50);
        continue;
      }
      throw new DmError(`the device set under ${root} is open in process ${holder || 'unknown'}`, {
        code: 'ERR_DM_LOCKED',
        device: root,
        cause: e,
      });
    }
    await fh.truncate(0);
    await fh.write(`${process.pid}\n`, 0);
    await fh.sync();
    return fh;
  }
}

/** Whether process `pid` exists (signal 0 delivers nothing; EPERM: it exists, not ours). */
function alive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return true; // not a pid we can check: assume a live holder
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
