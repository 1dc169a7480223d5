// Device sets: Docker's graph-driver operations from the shell. Each call
// opens the set, acts, and closes it with { keep: true } so mounts and the
// pool stay for the next call. Only `set init` and `set create` make a set
// that is not there; the other verbs say it is missing.
import { Option, type Command } from 'commander';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DeviceSet, type DeviceSetInfo, type DeviceSetOptions } from '../device-set/index';
import { DmError } from '../errors';
import { humanSize } from '../format';
import { setDeviceJson, setInfoJson } from './json';
import { columns, emit, keyValues, withJson, type OutputOptions } from './output';
import { terminalProgress } from './progress-line';

interface SetOptions {
  root: string;
}

/** The set under `o.root` opened (made, when `make`), `body` run, the set closed with its mounts and pool kept (unless `keep` is false). */
async function withSet<T>(
  o: SetOptions,
  body: (ds: DeviceSet) => Promise<T>,
  { make = false, keep = true, options = {} }: { make?: boolean; keep?: boolean; options?: Partial<DeviceSetOptions> } = {},
): Promise<T> {
  if (!make && !existsSync(join(resolve(o.root), 'metadata', 'deviceset.json')))
    throw new DmError(`no device set under ${o.root}: devmapper set init --root ${o.root} makes one`, { code: 'ENOENT', device: o.root });
  const onProgress = terminalProgress();
  const ds = await DeviceSet.open({ ...options, root: o.root, ...(onProgress ? { onProgress } : {}) });
  try {
    return await body(ds);
  } finally {
    await ds.close({ keep });
  }
}

/** The storage block of `docker info`, as the seed document shows it. */
export function dockerInfo(i: DeviceSetInfo): string {
  return keyValues([
    ['Pool Name', i.poolName],
    ['Pool Blocksize', humanSize(i.poolBlockSize)],
    ['Base Device Size', humanSize(i.baseDeviceSize)],
    ['Backing Filesystem', i.backingFilesystem],
    ['Data file', i.dataFile],
    ['Metadata file', i.metadataFile],
    ['Data Space Used', humanSize(i.dataSpaceUsed)],
    ['Data Space Total', humanSize(i.dataSpaceTotal)],
    ['Data Space Available', humanSize(i.dataSpaceAvailable)],
    ['Metadata Space Used', humanSize(i.metadataSpaceUsed)],
    ['Metadata Space Total', humanSize(i.metadataSpaceTotal)],
    ['Metadata Space Available', humanSize(i.metadataSpaceAvailable)],
    ['Thin Pool Minimum Free Space', humanSize(i.thinPoolMinimumFreeSpace)],
    ['Udev Sync Supported', i.udevSyncSupported],
    ['Deferred Removal Enabled', i.deferredRemovalEnabled],
    ['Deferred Deletion Enabled', i.deferredDeletionEnabled],
    ['Deferred Deleted Device Count', i.deferredDeletedDeviceCount],
    ['Data loop file', i.dataLoopFile],
    ['Metadata loop file', i.metadataLoopFile],
    ['Library Version', i.libraryVersion],
  ]);
}

export function addSetCommands(program: Command, out: () => OutputOptions): void {
  const s = program.command('set').description("device sets: Docker's devicemapper graph driver");
  const root = (c: Command) => c.requiredOption('--root <dir>', "the set's directory (devicemapper/, metadata/, mnt/)");

  withJson(root(s.command('init')))
    .description('make the set: a loop-backed pool under ROOT/devicemapper and the base device with its filesystem')
    .option('--data-size <size>', 'sparse data file size (default 100G)')
    .option('--metadata-size <size>', 'sparse metadata file size (default 2G)')
    .option('--base-size <size>', 'base device size (default 10G)')
    .addOption(new Option('--fs <type>', 'base filesystem (default ext4)').choices(['ext4', 'xfs']))
    .addHelpText('after', '\nExample:\n  devmapper set init --root /var/lib/rt/dm --data-size 20G --base-size 5G')
    .action(async (o: SetOptions & { dataSize?: string; metadataSize?: string; baseSize?: string; fs?: 'ext4' | 'xfs' }) => {
      const options: Partial<DeviceSetOptions> = {};
      if (o.dataSize) options.dataSize = o.dataSize;
      if (o.metadataSize) options.metadataSize = o.metadataSize;
      if (o.baseSize) options.baseSize = o.baseSize;
      if (o.fs) options.fs = o.fs;
      const info = await withSet(o, (ds) => ds.info(), { make: true, options });
      emit(out(), setInfoJson(info), () => `Storage Driver: devicemapper\n${dockerInfo(info)}`);
    });

  root(s.command('close'))
    .description('tear the set down: unmount its mounts, deactivate its devices, take its pool down (files and records kept)')
    .addHelpText('after', '\nExample:\n  devmapper set close --root /var/lib/rt/dm')
    .action(async (o: SetOptions) => {
      await withSet(o, async () => undefined, { keep: false });
    });

  withJson(root(s.command('info')))
    .description('the docker info storage fields of an existing set')
    .addHelpText('after', '\nExample:\n  devmapper set info --root /var/lib/myruntime/devicemapper --json')
    .action(async (o: SetOptions) => {
      const info = await withSet(o, (ds) => ds.info());
      emit(out(), setInfoJson(info), () => `Storage Driver: devicemapper\n${dockerInfo(info)}`);
    });

  withJson(root(s.command('create <id>')))
    .description('create device ID as a snapshot of --parent (default: the base device); makes the set first if there is none')
    .option('--parent <id>', 'device to snapshot')
    .option('--size <size>', 'larger than the parent: grow the device and its filesystem')
    .addHelpText('after', '\nExample:\n  devmapper set create container1 --parent image1 --root /var/lib/rt/dm')
    .action(async (id: string, o: SetOptions & { parent?: string; size?: string }) => {
      const d = await withSet(
        o,
        (ds) => ds.create(id, { ...(o.parent ? { parent: o.parent } : {}), ...(o.size ? { size: o.size } : {}) }),
        {
          make: true,
        },
      );
      emit(out(), setDeviceJson(d), () => id);
    });

  root(s.command('mount <id> <path>'))
    .description('mount device ID at PATH (made if missing)')
    .option('-r, --read-only', 'mount read-only')
    .option('-o, --options <list>', 'mount options, comma-separated')
    .addHelpText('after', '\nExample:\n  devmapper set mount container1 /run/ctr/1/rootfs --root /var/lib/rt/dm')
    .action(async (id: string, path: string, o: SetOptions & { readOnly?: boolean; options?: string }) => {
      await withSet(o, (ds) => ds.mount(id, path, { readOnly: o.readOnly ?? false, options: o.options ? o.options.split(',') : [] }));
    });

  root(s.command('unmount <id>'))
    .description('unmount device ID and deactivate it')
    .addHelpText('after', '\nExample:\n  devmapper set unmount container1 --root /var/lib/rt/dm')
    .action(async (id: string, o: SetOptions) => {
      await withSet(o, (ds) => ds.unmount(id));
    });

  root(s.command('rm <id>'))
    .description('remove device ID')
    .addHelpText('after', '\nExample:\n  devmapper set rm container1 --root /var/lib/rt/dm')
    .action(async (id: string, o: SetOptions) => {
      await withSet(o, (ds) => ds.remove(id));
    });

  withJson(root(s.command('usage <id>')))
    .description('bytes the pool has mapped for device ID (from the thin status)')
    .addHelpText('after', '\nExample:\n  devmapper set usage container1 --root /var/lib/rt/dm --json')
    .action(async (id: string, o: SetOptions) => {
      const u = await withSet(o, (ds) => ds.usage(id));
      emit(out(), u, () =>
        keyValues([
          ['Size', humanSize(u.size)],
          ['Mapped', `${humanSize(u.mappedBytes)} (${u.mappedSectors} sectors)`],
          ['Highest mapped sector', u.highestMappedSector ?? '-'],
          ['Thin id', u.thinId],
          ['Transaction', u.transactionId],
        ]),
      );
    });

  withJson(root(s.command('ls')))
    .description('list the devices of a set')
    .addHelpText('after', '\nExample:\n  devmapper set ls --root /var/lib/rt/dm --json')
    .action(async (o: SetOptions) => {
      const devices = await withSet(o, async (ds) => Promise.all(ds.list().map((id) => ds.get(id))));
      emit(out(), devices.map(setDeviceJson), () =>
        columns(
          ['ID', 'PARENT', 'THIN-ID', 'SIZE', 'MOUNTED'],
          devices.map((d) => [d.id, d.parent || '(base)', d.thinId, humanSize(d.size), d.mountPoint ?? '']),
        ),
      );
    });
}
