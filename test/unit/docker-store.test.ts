// Reading Docker's devicemapper metadata (moby's field names, one file per
// device) into records, with no kernel: parsing, rollback of an uncommitted
// transaction, the name prefix, and the options a Docker store refuses.
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { native } from '../../lib/binding';
import {
  parseDeviceFile,
  parseDeviceSetFile,
  parseTransactionFile,
  readDockerMetadata,
  rollBack,
} from '../../lib/device-set/docker-metadata';
import { dockerPrefix } from '../../lib/device-set/docker-store';
import { DeviceSet } from '../../lib/index';

const H1 = 'a'.repeat(64);
const H2 = 'b'.repeat(64);
let root: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'docker-store-'));
  await mkdir(join(root, 'metadata'));
  await mkdir(join(root, 'devicemapper'));
});
afterEach(async () => {
  vi.restoreAllMocks();
  await rm(root, { recursive: true, force: true });
});

const put = (name: string, value: unknown) =>
  writeFile(join(root, 'metadata', name), typeof value === 'string' ? value : JSON.stringify(value));

describe('parsing Docker metadata files', () => {
  it('reads a device file with moby field names; a missing field is its zero value, as Go reads it', () => {
    expect(parseDeviceFile('{"device_id":7,"size":10737418240,"transaction_id":9,"initialized":false,"deleted":true}', '/m/x', H1)).toEqual(
      {
        id: H1,
        deviceId: 7,
        size: 10737418240,
        parent: null,
        transactionId: 9,
        deleted: true,
      },
    );
    expect(parseDeviceFile('{"device_id":1,"size":1048576,"transaction_id":1,"initialized":true}', '/m/base', '')).toEqual({
      id: '',
      deviceId: 1,
      size: 1048576,
      parent: null,
      transactionId: 1,
      initialized: true,
    });
    expect(parseDeviceFile('{"device_id":3,"size":1049276}', '/m/x', H1).size).toBe(1048576 + 512); // whole sectors, as Docker activated it
  });

  it('bad JSON is ERR_DM_CORRUPT naming the file', () => {
    for (const text of ['{"device_id":', '[1]', '"x"', 'null']) {
      let err: unknown;
      try {
        parseDeviceFile(text, '/var/lib/docker/devicemapper/metadata/abc', 'abc');
      } catch (e) {
        err = e;
      }
      const file = '/var/lib/docker/devicemapper/metadata/abc';
      expect(err).toMatchObject({ name: 'DmError', code: 'ERR_DM_CORRUPT', device: file, message: expect.stringContaining(file) });
    }
  });

  it('a field of the wrong type or out of range is ERR_DM_CORRUPT naming file and field', () => {
    const corrupt = (more: object = {}) => expect.objectContaining({ code: 'ERR_DM_CORRUPT', ...more });
    expect(() => parseDeviceFile('{"device_id":"1"}', '/m/f', 'f')).toThrow(
      corrupt({ message: expect.stringMatching(/\/m\/f.*device_id/) }),
    );
    expect(() => parseDeviceFile('{"device_id":16777216}', '/m/f', 'f')).toThrow(corrupt());
    expect(() => parseDeviceFile('{"device_id":1,"size":-5}', '/m/f', 'f')).toThrow(corrupt({ message: expect.stringContaining('size') }));
    expect(() => parseDeviceFile('{"device_id":1,"deleted":"no"}', '/m/f', 'f')).toThrow(corrupt());
    expect(() => parseDeviceSetFile('{"BaseDeviceFilesystem":"btrfs"}', '/m/d')).toThrow(
      corrupt({ message: expect.stringContaining('btrfs') }),
    );
    expect(() => parseTransactionFile('{"open_transaction_id":1.5}', '/m/t')).toThrow(corrupt({ device: '/m/t' }));
  });

  it('reads deviceset-metadata and transaction-metadata', () => {
    expect(parseDeviceSetFile('{"next_device_id":12,"BaseDeviceUUID":"u-1","BaseDeviceFilesystem":"xfs"}', '/m/d')).toEqual({
      nextDeviceId: 12,
      baseUuid: 'u-1',
      fs: 'xfs',
    });
    expect(parseDeviceSetFile('{"next_device_id":3}', '/m/d')).toEqual({ nextDeviceId: 3 }); // before Docker recorded UUID and filesystem
    expect(parseTransactionFile(`{"open_transaction_id":4,"device_hash":"${H1}","device_id":5}`, '/m/t')).toEqual({
      openTransactionId: 4,
      hash: H1,
      deviceId: 5,
    });
  });
});

describe('readDockerMetadata', () => {
  it('reads every device file (base as id ""), skipping temp files, *.migrated, directories and the two set files', async () => {
    await put('base', { device_id: 1, size: 64 << 20, transaction_id: 1, initialized: true, deleted: false });
    await put(H1, { device_id: 2, size: 64 << 20, transaction_id: 2, initialized: false, deleted: false });
    await put(`${H1}-init`, { device_id: 3, size: 64 << 20, transaction_id: 3, initialized: false, deleted: true });
    await put('deviceset-metadata', { next_device_id: 3, BaseDeviceUUID: 'x', BaseDeviceFilesystem: 'ext4' });
    await put('transaction-metadata', { open_transaction_id: 3, device_hash: `${H1}-init`, device_id: 3 });
    await put('.tmp123456', '{"half');
    await put('json.migrated', '{}');
    await mkdir(join(root, 'metadata', 'lost+found'));
    const m = await readDockerMetadata(root);
    expect(m.records.map((r) => r.id).sort()).toEqual(['', H1, `${H1}-init`]);
    expect(m.records.find((r) => r.id === `${H1}-init`)).toMatchObject({ deviceId: 3, deleted: true });
    expect(m.set).toEqual({ nextDeviceId: 3, baseUuid: 'x', fs: 'ext4' });
    expect(m.transaction).toEqual({ openTransactionId: 3, hash: `${H1}-init`, deviceId: 3 });
  });

  it('names the bad file among many', async () => {
    await put('base', { device_id: 1, size: 1 << 20 });
    await put(H2, '{"device_id": 2, "size":');
    await expect(readDockerMetadata(root)).rejects.toMatchObject({ code: 'ERR_DM_CORRUPT', device: join(root, 'metadata', H2) });
  });

  it('reads the oldest drivers\' devicemapper/json ({"Devices": ...}), which wins as Docker\'s migration made it', async () => {
    await put(H1, { device_id: 2, size: 1 << 20 });
    const Devices = { '': { device_id: 1, size: 1 << 20, initialized: true }, [H1]: { device_id: 9, size: 2 << 20 } };
    await writeFile(join(root, 'devicemapper', 'json'), JSON.stringify({ Devices }));
    const m = await readDockerMetadata(root);
    expect(m.records.find((r) => r.id === H1)).toMatchObject({ deviceId: 9, size: 2 << 20 });
    expect(m.records.find((r) => r.id === '')).toMatchObject({ deviceId: 1, initialized: true });
  });

  it('a root without metadata/ is not a Docker store', async () => {
    await rm(join(root, 'metadata'), { recursive: true });
    await expect(readDockerMetadata(root)).rejects.toMatchObject({
      code: 'ENOENT',
      message: expect.stringContaining('not a Docker devicemapper store'),
    });
  });
});

describe("Docker's start-up rollback, in memory", () => {
  const records = [
    { id: '', deviceId: 1, size: 1, parent: null, transactionId: 1 },
    { id: H1, deviceId: 2, size: 1, parent: null, transactionId: 2 },
  ];
  it('a transaction the pool reached (Docker leaves the file after every commit) changes nothing', () => {
    expect(rollBack({ records, set: undefined, transaction: { openTransactionId: 2, hash: H1, deviceId: 2 } }, 2)).toEqual({ records });
    expect(rollBack({ records, set: undefined, transaction: { openTransactionId: 1, hash: H1, deviceId: 2 } }, 2)).toEqual({ records });
    expect(rollBack({ records, set: undefined, transaction: undefined }, 2)).toEqual({ records });
  });
  it('one the pool did not reach loses its device, as Docker deleted it', () => {
    const transaction = { openTransactionId: 3, hash: H1, deviceId: 2 };
    expect(rollBack({ records, set: undefined, transaction }, 2)).toEqual({ records: [records[0]], rolledBack: H1 });
  });
});

it('the name prefix is docker-MAJ:MIN-INO of root, as stat(1) prints them', async () => {
  const [maj, min, ino] = execFileSync('stat', ['-c', '%Hd %Ld %i', root], { encoding: 'utf8' }).trim().split(' ');
  expect(await dockerPrefix(root)).toBe(`docker-${maj}:${min}-${ino}`);
});

describe('DeviceSet.open with layout docker: options refused before anything is touched', () => {
  const untouched = async (options: Record<string, unknown>, code: string, text: string) => {
    await put('base', { device_id: 1, size: 1 << 20, initialized: true });
    await put('deviceset-metadata', { next_device_id: 1 });
    const before = (await readdir(root, { recursive: true })).sort();
    const ioctl = vi.spyOn(native, 'dmIoctl');
    const attach = vi.spyOn(native, 'loopAttach');
    const refused = { name: 'DmError', code, message: expect.stringContaining(text) };
    await expect(DeviceSet.open({ root, ...options } as never)).rejects.toMatchObject(refused);
    expect(ioctl).not.toHaveBeenCalled();
    expect(attach).not.toHaveBeenCalled();
    expect((await readdir(root, { recursive: true })).sort()).toEqual(before);
  };

  it.each([
    [{ layout: 'docker', baseSize: '20G' }, 'baseSize'],
    [{ layout: 'docker', dataSize: '200G' }, 'dataSize'],
    [{ layout: 'docker', blockSize: '128K' }, 'blockSize'],
    [{ layout: 'docker', mkfsArgs: ['-m0'] }, 'mkfsArgs'],
    [{ layout: 'docker', readOnly: false }, 'writing to a Docker store is not supported'],
    [{ layout: 'overlay' }, "'overlay' is not 'devmapper' or 'docker'"],
    [{ readOnly: true }, "only layout 'docker' opens read-only"],
  ])('%j', (options, text) => untouched(options, 'ERR_DM_INVALID_ARG', text));

  it("the library's own layout refuses a Docker store rather than write its records into it", () =>
    untouched({ baseSize: '64M' }, 'ERR_DM_INVALID_ARG', "layout: 'docker'"));
});
