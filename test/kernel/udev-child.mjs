// Child process of udev.test.ts, started where /run/udev/control exists (a
// private tmpfs on /run), so the library believes udev manages /dev. A
// stand-in for udev in this process makes /dev/mapper/NAME (mode 0600, so
// the parent can tell its nodes from the library's 0660 ones) DELAY ms after
// a device appears, or never when DELAY is 'never', and removes the nodes of
// devices that are gone once this script has looked at what the library left
// (not after a fixed time: on a busy machine a remove can take longer than
// any such time). Prints one JSON line of what it saw.
import { readdirSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { dm, DeviceSet } = require('../../dist/index.js');
const { native } = require('../../dist/binding.js');
const [name, delayText, setRoot] = process.argv.slice(2);
const delay = delayText === 'never' ? Infinity : Number(delayText);

/** name → when it was first seen, for the devices in /sys/block. */
const seen = new Map();
/** Set once the library's own removal has been looked at: then udev may remove nodes. */
let removing = false;
const udev = setInterval(() => {
  const live = new Map();
  for (const b of readdirSync('/sys/block').filter((b) => b.startsWith('dm-'))) {
    try {
      const n = readFileSync(`/sys/block/${b}/dm/name`, 'utf8').trim();
      const [major, minor] = readFileSync(`/sys/block/${b}/dev`, 'utf8').trim().split(':').map(Number);
      live.set(n, { major, minor });
    } catch {
      // removed meanwhile
    }
  }
  for (const [n, dev] of live) {
    if (!seen.has(n)) seen.set(n, Date.now());
    if (Date.now() - seen.get(n) >= delay && !statSync(`/dev/mapper/${n}`, { throwIfNoEntry: false })) {
      try {
        native.mknodSync(`/dev/mapper/${n}`, native.sysConstants.S_IFBLK | 0o600, dev.major, dev.minor);
      } catch {
        // the library made it first
      }
    }
  }
  // Nodes of devices that are gone.
  for (const n of seen.keys()) {
    if (live.has(n) || !removing) continue;
    seen.delete(n);
    try {
      unlinkSync(`/dev/mapper/${n}`);
    } catch {
      // not there
    }
  }
}, 5);

const modeOf = (path) => {
  const st = statSync(path, { throwIfNoEntry: false });
  return st ? st.mode & 0o777 : null;
};

const t = Date.now();
const d = await dm.create(name, { table: [{ start: 0, length: 2048, type: 'zero', params: '' }] });
const createMs = Date.now() - t;
const mode = modeOf(d.path);
await dm.remove(name);
const leftByRemove = modeOf(d.path); // the library leaves removal to udev
removing = true;
// udev removes it: wait for that (bounded far above any delay load causes).
for (const end = Date.now() + 30_000; modeOf(d.path) !== null && Date.now() < end;) await new Promise((r) => setTimeout(r, 10));
const afterUdev = modeOf(d.path);
let udevSyncSupported = null;
if (setRoot) {
  const ds = await DeviceSet.open({ root: setRoot, baseSize: '32M', dataSize: '256M', metadataSize: '8M' });
  udevSyncSupported = (await ds.info()).udevSyncSupported;
  await ds.close();
}
clearInterval(udev);
const umask = parseInt(/^Umask:\s*(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))[1], 8);
console.log(JSON.stringify({ createMs, mode, leftByRemove, afterUdev, udevSyncSupported, umask }));
