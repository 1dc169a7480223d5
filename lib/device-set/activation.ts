// Bringing a client's thin device up under its own name, for the device set
// and the snapshotter alike: after a crash the name may already be there,
// live, half-made or on its way out (deferred removal).
import * as dm from '../dm';
import { DmError } from '../errors';
import { ensureBlockNode } from '../nodes';
import type { ThinPool } from '../pool/index';

/**
 * Thin id `thinId` active as `o.name`, its node in place; `made` when this
 * call activated it. The activation is tried first: one trip when the
 * device was not active (the common case); `lookFirst` when it most likely
 * is. A name already taken (the kernel's EBUSY) is looked at: a live
 * device is kept (a deferred removal cancelled), one created but never
 * loaded (a process killed in between) is removed and the activation tried
 * again.
 */
export async function ensureActive(
  pool: ThinPool,
  thinId: number,
  o: { name: string; size: number; readOnly: boolean },
  { lookFirst = false } = {},
): Promise<{ device: dm.DeviceInfo; made: boolean }> {
  const activate = async () => ({ device: await pool.activate(thinId, o), made: true });
  const look = () => dm.info(o.name).catch(() => undefined);
  let live: dm.DeviceInfo | undefined;
  if (lookFirst) live = await look();
  else {
    try {
      return await activate();
    } catch (e) {
      if (!(e instanceof DmError) || e.code !== 'EBUSY') throw e;
    }
    live = await look();
  }
  if (live?.activeTable) {
    if (live.deferredRemove) await dm.cancelDeferredRemove(o.name);
    await ensureBlockNode(live.path, live); // a killed process may have made the device but not its node
    return { device: live, made: false };
  }
  if (live) await dm.remove(o.name);
  return activate(); // not there, or removed just now; an EBUSY now is the kernel's answer
}
