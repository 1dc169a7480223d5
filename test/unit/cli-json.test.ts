// The --json shape builders against docs/cli-json.md, with faked library
// objects in their different forms (no uuid, no loop backing, a failed pool,
// an unknown target type): the same keys with the same types every time.
// test/kernel/cli.test.ts checks the CLI's real output against the same page.
import { describe, expect, it } from 'vitest';
import {
  depsJson,
  infoJson,
  listJson,
  loopAttachJson,
  loopJson,
  poolStatusJson,
  setDeviceJson,
  setInfoJson,
  statusJson,
  tableJson,
  versionJson,
} from '../../lib/cli/json';
import type { DeviceInfo } from '../../lib/dm';
import type { DeviceSetInfo } from '../../lib/device-set/index';
import type { LoopInfo } from '../../lib/loop';
import { toPoolStatus, toPoolUsage } from '../../lib/pool/index';
import { grammars } from '../../lib/targets/index';
import { documentedShapes, shapeProblems, type Shape } from '../cli-json-shapes';

const shapes = documentedShapes();
const shape = (verb: string): Shape => {
  const s = shapes.get(verb);
  if (s === undefined) throw new Error(`docs/cli-json.md has no shape for '${verb}'`);
  return s;
};
const item = (verb: string): Shape => (shape(verb) as Shape[])[0]!;

/** Each value fits the verb's shape, and all have the same keys. */
function pinned(s: Shape, ...values: unknown[]) {
  for (const v of values) expect(shapeProblems(v, s)).toEqual([]);
  const keys = values.map((v) => Object.keys(v as object));
  for (const k of keys) expect(k).toEqual(keys[0]);
}

const info: DeviceInfo = {
  name: 'a',
  uuid: '',
  major: 253,
  minor: 0,
  path: '/dev/mapper/a',
  openCount: 0,
  targetCount: 1,
  eventNr: 0,
  suspended: false,
  readOnly: false,
  activeTable: true,
  inactiveTable: false,
  deferredRemove: false,
  internalSuspend: false,
};

const loopInfo: LoopInfo = {
  path: '/dev/loop0',
  number: 0,
  major: 7,
  minor: 0,
  backingFile: '/var/lib/x',
  offset: 0,
  sizeLimit: 0,
  readOnly: false,
  autoclear: false,
  partscan: false,
  directIo: false,
  blockSize: 512,
  size: 1 << 20,
};

const setInfo: DeviceSetInfo = {
  poolName: 'p',
  poolBlockSize: 65536,
  baseDeviceSize: 10 << 30,
  backingFilesystem: 'ext4',
  dataFile: '/dev/loop0',
  metadataFile: '/dev/loop1',
  dataLoopFile: '/var/lib/rt/devicemapper/data',
  metadataLoopFile: '/var/lib/rt/devicemapper/metadata',
  dataSpaceUsed: 0,
  dataSpaceTotal: 1,
  dataSpaceAvailable: 1,
  metadataSpaceUsed: 0,
  metadataSpaceTotal: 1,
  metadataSpaceAvailable: 1,
  thinPoolMinimumFreeSpace: 0,
  udevSyncSupported: false,
  deferredRemovalEnabled: false,
  deferredDeletionEnabled: false,
  deferredDeletedDeviceCount: 0,
  libraryVersion: '0.1.0',
  driverVersion: '4.48.0',
  devices: 1,
};

describe('docs/cli-json.md', () => {
  it('has a shape for every read verb, each of known types', () => {
    const read = ['version', 'ls', 'info', 'table', 'status', 'deps', 'loop ls', 'loop info', 'pool status', 'thin usage'];
    for (const verb of [...read, 'set info', 'set ls', 'set usage']) expect(() => shapeProblems(null, shape(verb))).not.toThrow();
  });

  it('the check fails on a missing key, an extra key, a dropped null and a wrong type', () => {
    const s = shape('ls');
    const good = { name: 'a', uuid: null, major: 1, minor: 2, eventNr: 0 };
    expect(shapeProblems([good], s)).toEqual([]);
    const { uuid: _dropped, ...noUuid } = good;
    expect(shapeProblems([noUuid], s)).toEqual(['$[0].uuid: missing']);
    expect(shapeProblems([{ ...good, path: '/dev/mapper/a' }], s)).toEqual(['$[0].path: not documented']);
    expect(shapeProblems([{ ...good, major: '1' }], s)).toEqual(['$[0].major: "1" is not number']);
    expect(shapeProblems({ library: '0.1.0', driver: { major: 4 }, targets: [] }, shape('version'))).toHaveLength(1);
    expect(shapeProblems({ library: '0.1', driver: '4.48.0', targets: [] }, shape('version'))).toHaveLength(1);
  });
});

describe('shape builders', () => {
  it('version: every version "X.Y.Z"', () => {
    const v = versionJson('0.1.0', { major: 4, minor: 48, patch: 0 }, [{ name: 'thin-pool', version: [1, 23, 0] }]);
    expect(v).toEqual({ library: '0.1.0', driver: '4.48.0', targets: [{ name: 'thin-pool', version: '1.23.0' }] });
    pinned(shape('version'), v, versionJson('1.0.0', { major: 4, minor: 0, patch: 0 }, []));
  });

  it('ls and info: uuid null when the device has none', () => {
    const listed = listJson([
      { name: 'a', major: 253, minor: 0, eventNr: 0 },
      { name: 'b', uuid: 'LVM-x', major: 253, minor: 1, eventNr: 3 },
    ]);
    expect(listed.map((d) => d.uuid)).toEqual([null, 'LVM-x']);
    pinned(item('ls'), ...listed);
    pinned(shape('info'), infoJson(info), infoJson({ ...info, uuid: 'LVM-x', suspended: true, inactiveTable: true }));
    expect(infoJson(info).uuid).toBeNull();
    pinned(shape('create'), infoJson(info));
    pinned(shape('thin activate'), infoJson(info));
  });

  it('table and status: parsed null for a target type without a grammar', () => {
    const lines = [
      { start: 0, length: 2048, type: 'thin-pool', params: '0 10/512 0/1024 - rw discard_passdown queue_if_no_space - 128' },
      { start: 2048, length: 8, type: 'striped', params: '' },
      { start: 2056, length: 8, type: 'zero', params: '' },
    ];
    expect(shapeProblems(tableJson(lines), shape('table'))).toEqual([]);
    expect(shapeProblems(tableJson([]), shape('table'))).toEqual([]);
    const status = statusJson(lines.map((t) => ({ ...t, parsed: grammars[t.type]?.parseStatus(t.params) })));
    expect(status[0]!.parsed).toMatchObject({ transactionId: 0, usedMetadataBlocks: 10 });
    expect(status[1]!.parsed).toBeNull();
    expect(status[2]!.parsed).toEqual({}); // zero's status has no fields
    pinned(item('status'), ...status);
  });

  it('deps: names null where sysfs has none, name = kernel name for a device that is not device-mapper', () => {
    const deps = depsJson([
      { major: 7, minor: 0, blockDevice: 'loop0', name: undefined },
      { major: 253, minor: 2, blockDevice: 'dm-2', name: 'pool' },
      { major: 8, minor: 99, blockDevice: undefined, name: undefined },
    ]);
    expect(deps.map((d) => d.name)).toEqual(['loop0', 'pool', null]);
    pinned(item('deps'), ...deps);
  });

  it('loop: info and ls entries; attach with a file and -f alone', () => {
    pinned(shape('loop info'), loopJson(loopInfo), loopJson({ ...loopInfo, offset: 1 << 20, sizeLimit: 4096, readOnly: true }));
    pinned(item('loop ls'), loopJson(loopInfo));
    pinned(
      shape('loop attach'),
      loopAttachJson({ path: '/dev/loop0', number: 0, major: 7, minor: 0, directIo: true }),
      loopAttachJson({ path: '/dev/loop1', number: 1, major: 7, minor: 1, directIo: null }),
    );
  });

  it('pool status: loop-backed and direct, healthy and failed, the same keys', () => {
    const healthy = toPoolStatus('3 10/512 5/1024 - rw discard_passdown queue_if_no_space - 128', 10);
    const ignoring = toPoolStatus('3 10/512 5/1024 7 ro ignore_discard error_if_no_space needs_check', 10);
    const failed = toPoolStatus('Fail', 10);
    expect(ignoring.metadataLowWatermark).toBeUndefined(); // the library leaves it out ...
    const loopPool = {
      name: 'p',
      path: '/dev/mapper/p',
      blockSize: 65536,
      loopBacking: { dir: '/d', dataFile: '/d/data', metadataFile: '/d/metadata' },
    };
    const direct = { name: 'q', path: '/dev/mapper/q', blockSize: 65536 };
    const all = [
      poolStatusJson(loopPool, healthy, toPoolUsage(healthy, 65536, { data: 1 << 30, metadata: 1 << 30 })),
      poolStatusJson(direct, ignoring, toPoolUsage(ignoring, 65536)),
      poolStatusJson(direct, failed, toPoolUsage(failed, 65536)),
    ];
    pinned(shape('pool status'), ...all);
    expect(all[1]).toMatchObject({ metadataLowWatermark: null, ignoreDiscard: true, dataFile: null, usage: { data: { hostFree: null } } }); // ... the CLI says null
    expect(all[0]).toMatchObject({ ignoreDiscard: false, dataFile: '/d/data', usage: { data: { hostFree: 1 << 30 } } });
    expect(shapeProblems(toPoolUsage(healthy, 65536), shape('pool resize'))).not.toEqual([]); // the library's own object drops hostFree
  });

  it('set info and set ls: null for what a direct-lvm set or an unmounted base device lacks', () => {
    const { dataLoopFile: _d, metadataLoopFile: _m, ...directInfo } = setInfo;
    pinned(shape('set info'), setInfoJson(setInfo), setInfoJson(directInfo));
    expect(setInfoJson(directInfo).dataLoopFile).toBeNull();
    const base = { id: 'base', parent: null, thinId: 1, size: 1 << 30, path: '/dev/mapper/b', active: false, deleted: false };
    pinned(item('set ls'), setDeviceJson(base), setDeviceJson({ ...base, id: 'ctr', parent: 'base', active: true, mountPoint: '/mnt' }));
    expect(setDeviceJson(base).mountPoint).toBeNull();
  });
});
